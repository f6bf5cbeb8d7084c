"""X-MON 設定 view."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from ..access import admin_required
from ..extensions import db
from ..models import DEFAULT_VOICE, VOICE_LABELS, XmonSettings
from . import bp
from .forms import XmonSettingsForm


@bp.route("/", methods=["GET", "POST"])
@admin_required
def index() -> Response | str:
    """Show and save the X-MON URL and the voice."""
    settings = XmonSettings.for_update()
    form = XmonSettingsForm(obj=settings)
    retired_voice = None if settings.voice_offered else settings.voice
    if retired_voice and not form.is_submitted():
        # Calls already use the default; the form shows what they use.
        form.voice.data = DEFAULT_VOICE
    if form.validate_on_submit():
        form.populate_obj(settings)
        db.session.commit()
        flash("X-MON 設定を反映しました。", "success")
        return redirect(url_for("xmon_settings.index"))
    db.session.rollback()
    return render_template(
        "xmon_settings/index.html", form=form, retired_voice=retired_voice, default_voice=VOICE_LABELS[DEFAULT_VOICE]
    )
