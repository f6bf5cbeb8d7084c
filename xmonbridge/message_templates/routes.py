"""Views of メッセージテンプレート (一覧, 詳細表示, 編集 with 「テスト通話」) and the button-call
再生メッセージ置き換え設定 tab."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from .. import approval, phone
from ..access import admin_required
from ..calls import testcall
from ..config_views import add_error
from ..extensions import db
from ..models import ACTIONS, MESSAGE_TEXT_MAX, REPLACEMENT_BUTTON, User, XmonSettings
from ..notify_settings.routes import load_numbers, replacements_page
from . import bp, kind, store
from .forms import MessageTemplateForm

# The 通話設定(ボタン操作付き) list, whose 「メッセージテンプレート」 button leads here.
BUTTON_CALLS_INDEX = "button_calls.index"
NO_XMON_URL = (
    "X-MON 設定の X-MON URL が設定されていないため、テスト通話を実行できません。ボタン操作付きの通話では、"
    "電話に出たときに Twilio が X-MON URL に接続して読み上げる内容を取得します。"
)


def _tabs_context(active: str) -> dict[str, Any]:
    """What the two tabs and the way back to 通話設定(ボタン操作付き) need."""
    has_list = BUTTON_CALLS_INDEX in current_app.view_functions
    return {
        "active_tab": active,
        "twilio_tab": BUTTON_CALLS_INDEX,
        "button_calls_url": url_for(BUTTON_CALLS_INDEX) if has_list else None,
    }


def _get_user_or_404(user_id: int) -> User:
    return db.get_or_404(User, user_id)


@bp.route("/")
@admin_required
def index() -> str:
    """List the users a template matters for, with what each hears."""
    return render_template(
        "message_templates/index.html",
        rows=store.listed_users(),
        # Users with a change waiting for approval.
        waiting={kind.user_id_of(c) for c in approval.pending_for(kind.KIND)},
        **_tabs_context("message_templates.index"),
    )


@bp.route("/<int:user_id>")
@admin_required
def show(user_id: int) -> str:
    """Show one user's messages and their pending changes."""
    user = _get_user_or_404(user_id)
    return render_template(
        "message_templates/show.html",
        user=user,
        user_label=kind.user_label(user),
        template=store.find(user.id),
        pending=[(c, approval.diff(c)) for c in kind.pending_of(user)],
        actions=ACTIONS,
        **_tabs_context("message_templates.index"),
    )


@dataclass(frozen=True)
class TestResult:
    """The outcome of 「テスト通話の実行」, shown above the form."""

    ok: bool
    message: str
    # The インシデント of the queued test call.
    incident_url: str | None = None


def _run_test(form: MessageTemplateForm) -> TestResult:
    """Queue one button call with the form's unsaved messages; nothing is saved."""
    refused = TestResult(False, "入力内容に誤りがあるため、テスト通話を実行できませんでした。各項目を確認してください。")
    if not form.validate_for_test():
        return refused
    user, account = form.test_user(), form.account
    if user is None or account is None:  # validated just above; a guard, not an assert (-O drops those)
        return refused
    if not XmonSettings.get().xmon_url:
        # Twilio fetches what a button call says from the X-MON URL when the callee answers.
        return TestResult(False, NO_XMON_URL)
    notification = testcall.start_test_call(
        account, str(form.test_from.data), user, form.opening_message.data or "", form.closing_message.data or ""
    )
    db.session.commit()
    message = f"テスト通話を{phone.display(user.phone)}に発信します。通話の状況はインシデントで確認できます。"
    if current_app.config["TWILIO_MODE"] == "simulate":
        message += "(シミュレーションモードのため、実際には発信されません。)"
    return TestResult(True, message, url_for("incidents.show", alert_id=notification.alert_id))


def _save(form: MessageTemplateForm, user: User) -> Response | None:
    """Record 「編集」, or apply 「編集と承認」; None (errors on the form) when refused."""
    approve_now = bool(form.submit_approve.data)
    try:
        change, applied = kind.submit(
            user, store.find(user.id), form.opening_message.data or "", form.closing_message.data or "", current_user, approve_now
        )
    except approval.ApprovalError as exc:
        db.session.rollback()
        add_error(form.opening_message, str(exc))
        return None
    db.session.commit()
    verb = ACTIONS[change.action]
    if applied is None:
        flash(
            f"ユーザ「{user.display_name}」の{kind.LABEL}の{verb}を承認待ちにしました。承認権限を持つユーザの承認後に反映されます。",
            "info",
        )
    else:
        flash(f"ユーザ「{user.display_name}」の{kind.LABEL}を{verb}し、承認しました。", "success")
    return redirect(url_for("message_templates.show", user_id=user.id))


@bp.route("/<int:user_id>/edit", methods=["GET", "POST"])
@admin_required
def edit(user_id: int) -> Response | str:
    """Propose (編集) or apply (編集と承認) a user's messages; 「テスト通話」 tries them unsaved."""
    user = _get_user_or_404(user_id)
    form = MessageTemplateForm(user=user, template=store.find(user.id))
    numbers_error = load_numbers(form)
    test_result = None
    if form.is_submitted():
        if form.run_test.data:
            test_result = _run_test(form)
        elif (form.submit.data or form.submit_approve.data) and form.validate():
            response = _save(form, user)
            if response is not None:
                return response
    if numbers_error:
        add_error(form.test_from, numbers_error)
    return render_template(
        "message_templates/form.html",
        form=form,
        user=user,
        user_label=kind.user_label(user),
        account_data=form.accounts_data(),
        max_chars=MESSAGE_TEXT_MAX,
        test_result=test_result,
        **_tabs_context("message_templates.index"),
    )


@bp.route("/replacements", methods=["GET", "POST"])
@admin_required
def replacements() -> Response | str:
    """再生メッセージ置き換え設定 of button calls (§5.2.3), the second tab."""
    return replacements_page(
        REPLACEMENT_BUTTON,
        BUTTON_CALLS_INDEX,
        template="message_templates/replacements.html",
        **_tabs_context("message_templates.replacements"),
    )
