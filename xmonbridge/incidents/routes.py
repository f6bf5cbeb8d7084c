"""インシデント views: the alerts (一覧) and one alert with every attempt it caused (詳細)."""

from __future__ import annotations

from flask import render_template, request
from flask_login import login_required
from sqlalchemy import false, select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..logs.routes import _paginate
from ..models import AlertRecord, Delivery, Notification
from . import bp, summary
from .forms import IncidentFilterForm

# The whole tree of an alert, loaded in a few queries for a page of alerts.
_TREE = selectinload(AlertRecord.notifications).selectinload(Notification.deliveries).selectinload(Delivery.attempts)


@bp.route("/")
@login_required
def index() -> str:
    """List alerts, most recent first, each with how its notifications went."""
    form = IncidentFilterForm(formdata=request.args)
    stmt = select(AlertRecord).options(_TREE).order_by(AlertRecord.received_at.desc(), AlertRecord.id.desc())
    stmt = stmt.where(*form.conditions()) if form.validate() else stmt.where(false())
    search = {key: value for key, value in request.args.items() if key != "page" and value}
    pagination = _paginate(stmt)
    rows = []
    for alert in pagination.items:
        views = summary.alert_views(alert)
        rows.append((alert, views, any(view.all_failed for view in views)))
    return render_template("incidents/index.html", form=form, pagination=pagination, search=search, rows=rows, s=summary)


@bp.route("/<int:alert_id>")
@login_required
def show(alert_id: int) -> str:
    """Show one alert, its notifications, each recipient and every attempt."""
    alert = db.get_or_404(AlertRecord, alert_id)
    followups = db.session.scalars(
        select(AlertRecord)
        .where(AlertRecord.problem_alert_id == alert.id)
        .order_by(AlertRecord.received_at, AlertRecord.id)
    ).all()
    return render_template(
        "incidents/show.html", alert=alert, views=summary.alert_views(alert), followups=followups, s=summary
    )
