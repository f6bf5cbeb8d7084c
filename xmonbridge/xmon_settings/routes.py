"""X-MON 設定 view."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from ..access import admin_required
from ..extensions import db
from ..models import XmonSettings
from . import bp
from .forms import XmonSettingsForm


@bp.route("/", methods=["GET", "POST"])
@admin_required
def index() -> Response | str:
    """Show and save the X-MON URL and the voice."""
    settings = XmonSettings.get()
    form = XmonSettingsForm(obj=settings)
    if form.validate_on_submit():
        form.populate_obj(settings)
        db.session.commit()
        flash("X-MON 設定を反映しました。", "success")
        return redirect(url_for("xmon_settings.index"))
    db.session.rollback()
    return render_template("xmon_settings/index.html", form=form)
