"""ハートビート通知 view."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from .. import heartbeat
from ..access import admin_required
from ..extensions import db
from ..models import XmonSettings
from ..notify_settings.kind import recipient_label
from ..twilio_errors import TwilioError
from . import bp
from .forms import HeartbeatForm


@bp.route("/", methods=["GET", "POST"])
@admin_required
def index() -> Response | str:
    """Show and save whom the heartbeat texts and when; 「テスト送信」 texts them with the form's values."""
    settings = XmonSettings.get()
    form = HeartbeatForm(settings=settings)
    outcome: tuple[str, str] | None = None
    if form.validate_on_submit():
        if form.send_test.data:
            outcome = _send_test(form)
        else:
            form.save_to(XmonSettings.for_update())
            db.session.commit()
            flash("ハートビート通知の設定を反映しました。", "success")
            return redirect(url_for("heartbeat_settings.index"))
    db.session.rollback()
    return render_template(
        "heartbeat_settings/index.html",
        form=form,
        settings=settings,
        outcome=outcome,
        check_seconds=f"{float(current_app.config['HEARTBEAT_CHECK_SECONDS']):g}",
    )


def _send_test(form: HeartbeatForm) -> tuple[str, str]:
    """Text the chosen user now, without saving; (Bootstrap class, message) for the page."""
    chosen = form.target()
    assert chosen is not None  # the form refuses テスト送信 without a user and an SMS setting
    # Telephony writes its ログ row in a session of its own; end this one's reads first.
    db.session.rollback()
    try:
        sid = heartbeat.send_test(chosen, form.dispatcher_minutes.data, form.twilio_minutes.data)
    except TwilioError as error:
        return "danger", f"テスト送信に失敗しました。{error}"
    return "success", f"テスト送信の SMS を {recipient_label(chosen.user)} に送信しました。Message SID: {sid}"
