"""X-MON 設定 view."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from ..access import admin_required
from ..extensions import db
from ..models import ACK_COMMAND_FILE, ACK_HTTP, DEFAULT_VOICE, VOICE_LABELS, XmonSettings
from . import bp
from .forms import XmonSettingsForm


@bp.route("/", methods=["GET", "POST"])
@admin_required
def index() -> Response | str:
    """Show and save the X-MON URL, the voice, the acknowledgement sink, the per-number limits and retention."""
    # The stored row, or the defaults: only a valid POST creates the row.
    settings = XmonSettings.get()
    form = XmonSettingsForm(settings=settings)
    retired_voice = None if settings.voice_offered else settings.voice
    if retired_voice and not form.is_submitted():
        # Calls already use the default; the form shows what they use.
        form.voice.data = DEFAULT_VOICE
    if form.validate_on_submit():
        form.save_to(XmonSettings.for_update())
        db.session.commit()
        flash("X-MON 設定を反映しました。", "success")
        return redirect(url_for("xmon_settings.index"))
    db.session.rollback()
    return render_template(
        "xmon_settings/index.html",
        form=form,
        retired_voice=retired_voice,
        default_voice=VOICE_LABELS[DEFAULT_VOICE],
        command_file_mode=ACK_COMMAND_FILE,
        http_mode=ACK_HTTP,
    )
