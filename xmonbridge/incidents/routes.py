"""インシデント views: the alerts (一覧) and one alert with every attempt it caused (詳細)."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response
from sqlalchemy import false, select
from sqlalchemy.orm import selectinload

from ..access import admin_required
from ..calls import recipients
from ..extensions import db
from ..forms import EmptyForm
from ..logs.routes import _paginate
from ..models import CHANNEL_BUTTON, AlertRecord, Delivery, Notification, utcnow
from . import bp, button, summary
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
    alerts: list[AlertRecord] = list(pagination.items)
    joined = button.joined_notifications([alert.id for alert in alerts])
    calls = button.summaries(
        [n for alert in alerts for n in alert.notifications if n.channel == CHANNEL_BUTTON]
        + [n for found in joined.values() for n in found]
    )
    rows = []
    for alert in alerts:
        views: list[Any] = [
            calls[n.id] if n.channel == CHANNEL_BUTTON else summary.notification_view(n) for n in alert.notifications
        ]
        joins = [calls[n.id] for n in joined.get(alert.id, [])]
        failed = any(view.all_failed for view in views + joins)
        rows.append((alert, views, joins, failed))
    return render_template("incidents/index.html", form=form, pagination=pagination, search=search, rows=rows, s=summary)


@bp.route("/<int:alert_id>")
@login_required
def show(alert_id: int) -> str:
    """Show one alert, its notifications (a button call it joined too), each recipient and every attempt."""
    alert = db.get_or_404(AlertRecord, alert_id)
    followups = db.session.scalars(
        select(AlertRecord)
        .where(AlertRecord.problem_alert_id == alert.id)
        .order_by(AlertRecord.received_at, AlertRecord.id)
    ).all()
    joined = button.joined_notifications([alert.id]).get(alert.id, [])
    views: list[Any] = [
        button.button_detail(n, alert) if n.channel == CHANNEL_BUTTON else summary.notification_view(n)
        for n in [*alert.notifications, *joined]
    ]
    return render_template(
        "incidents/show.html", alert=alert, views=views, followups=followups, s=summary
    )


@bp.route("/notifications/<int:notification_id>/end", methods=["POST"])
@admin_required
def end_notification(notification_id: int) -> Response:
    """「通知を終了」: an administrator ends an active button call (no more calls)."""
    notification = db.get_or_404(Notification, notification_id)
    if notification.channel != CHANNEL_BUTTON:
        abort(404)
    alert_id = request.form.get("alert_id", type=int) or notification.alert_id
    if not EmptyForm().validate_on_submit():
        flash("通知を終了できませんでした。画面を開き直してやり直してください。", "danger")
    elif recipients.end_by_admin(notification, current_user, utcnow()):
        db.session.commit()
        flash("通知を終了しました。以降は発信しません。", "success")
    else:
        db.session.rollback()
        flash("この通知は既に終了しています。", "warning")
    return redirect(url_for("incidents.show", alert_id=alert_id) + f"#notification-{notification.id}")
