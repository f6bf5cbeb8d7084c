"""Views of 通話設定(シンプル通話) and SMS 通知設定 (一覧, 新規作成, 詳細表示, 編集, 削除, through
approval), and 再生メッセージ置き換え設定. Both blueprints get the same views from register().
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from .. import approval, from_numbers, replacement_lists, sent_lookup, telephony, twiml
from ..access import admin_required
from ..alerts import commands as alert_commands
from ..config_views import DeleteForm, add_error, delete_view, save_change
from ..extensions import db
from ..models import (
    ACTION_UPDATE,
    ACTIONS,
    REPLACEMENT_SIMPLE,
    User,
    XmonSettings,
    utcnow,
)
from . import simple_bp, sms_bp
from .channels import SIMPLE_CALL, SMS, Channel, Screen
from .forms import NO_SMS_NUMBER, NOT_MOBILE, ReplacementForm, SettingForm
from .kind import REPLACEMENTS_KIND, recipient_label


@dataclass(frozen=True)
class TestResult:
    """The outcome of 「発信テストの実行」/「送信テストの実行」, shown on the form."""

    ok: bool
    message: str


def _get_setting_or_404(channel: Channel, setting_id: int) -> Any:
    return db.get_or_404(channel.kind.model, setting_id)


def _guide_context() -> dict[str, Any]:
    """What the TwiML Bin guidance (and its TwiML snippet) needs."""
    return {"bin_twiml": twiml.bin_snippet(XmonSettings.get().effective_voice)}


def load_numbers(form: Any) -> str | None:
    """Fill the From list: read it from Twilio on 「再取得」 or if the account's were never read.

    Any form with `account`, `refresh_numbers` and `bind_numbers()` (the setting forms, and
    メッセージテンプレート's テスト通話).

    An account that owns no number is read once too, not on every request (each read is a
    Twilio request and a ログ row). On failure the cached list stays; the Japanese reason is
    returned for the form.
    """
    account = form.account
    error = None
    if account is not None and (form.refresh_numbers.data or not from_numbers.was_read(account)):
        try:
            from_numbers.refresh(account)
            db.session.commit()
        except telephony.TwilioError as exc:
            db.session.rollback()
            kept = "前回取得した一覧を表示しています。" if from_numbers.was_read(account) else ""
            error = f"Twilio 電話番号を取得できませんでした。{exc}{kept}"
    form.bind_numbers()
    return error


LOOKUP_FAILED = "Twilio への問い合わせにも失敗しました。ログを確認し、届いていない場合にだけ再度お試しください。"
CONFIRMED = "(Twilio の応答が途切れたため、Twilio に問い合わせて確認しました。)"
NOT_FOUND_YET = (
    "Twilio に問い合わせましたが、まだ見つかりません(発信待ちのものは表示されないことがあります)。"
    "数分後にログを確認し、届いていない場合にだけ再度お試しください。"
)


def _run_test(channel: Channel, form: SettingForm) -> TestResult:
    """Send one test with the form's unsaved values; nothing is saved."""
    refused = TestResult(False, f"入力内容に誤りがあるため、{channel.test_label}を実行できませんでした。各項目を確認してください。")
    if not form.validate_for_test():
        return refused
    to = db.session.get(User, form.test_to.data) if form.test_to.data is not None else None
    if form.account is None or to is None:  # validated just above; a guard, not an assert (-O drops those)
        return refused
    setting_id = form.setting.id if form.setting is not None else None
    started, confirmed = utcnow() - sent_lookup.SLACK, ""
    last_log_id = sent_lookup.last_log_id()
    try:
        sid = channel.send_test(form, form.account, to, setting_id)
    except telephony.TwilioError as exc:
        if not exc.unknown:
            return TestResult(False, f"{channel.test_label}に失敗しました。{exc}")
        try:
            found, ambiguous = sent_lookup.look_up(
                # The sender as sent (for SMS maybe an alphanumeric ID or a Messaging Service), not
                # the From list, which is posted whatever the sender kind.
                channel.find_sent, form.account, str(to.phone), str(form.values()["from_number"]), started, last_log_id
            )
        except telephony.TwilioError as lookup_error:
            return TestResult(False, f"{channel.test_label}の結果を確認できませんでした。{exc}{LOOKUP_FAILED}{lookup_error}")
        if not found:
            return TestResult(False, f"{channel.test_label}の結果を確認できませんでした。{exc}{NOT_FOUND_YET}")
        if ambiguous:
            return TestResult(False, f"{channel.test_label}の結果を確認できませんでした。{exc}{sent_lookup.AMBIGUOUS.format(sid=found)}")
        sid, confirmed = found, CONFIRMED
    message = channel.test_done.format(sid=sid, to=recipient_label(to)) + confirmed
    if current_app.config["TWILIO_MODE"] == "simulate":
        message += "(シミュレーションモードのため、実際には送られていません。)"
    return TestResult(True, message)


def _form_page(channel: Channel, setting: Any = None) -> Response | str:
    """新規作成 and 編集: one form whose buttons save, refresh From, edit rows or test."""
    form = channel.form_class(setting=setting)
    if not form.accounts:
        return render_template(
            "notify_settings/no_account.html", channel=channel, setting=setting, **_guide_context()
        )
    numbers_error = load_numbers(form)
    test_result = None
    if form.is_submitted():
        if form.run_test.data:
            test_result = _run_test(channel, form)
        elif form.add_recipient.data:
            form.add_row()
        elif form.remove_recipient.data is not None:
            form.remove_row(form.remove_recipient.data)
        elif (form.submit.data or form.submit_approve.data) and form.validate():
            response = save_change(channel.pages, form, setting)
            if response is not None:
                return response
    if numbers_error:
        add_error(form.from_number, numbers_error)
    return render_template(
        "notify_settings/form.html",
        channel=channel,
        form=form,
        setting=setting,
        test_result=test_result,
        account_data=form.accounts_data(),
        no_sms_number=NO_SMS_NUMBER,
        not_mobile_text=NOT_MOBILE,
    )


def commands_context(screen: Screen, setting: Any) -> dict[str, Any]:
    """The escalation command blocks of a setting (R11), grouped by variant, for its detail page."""
    blocks = alert_commands.blocks(
        screen.setting_type, setting.id, setting.name, XmonSettings.get().xmon_url, alert_commands.installed_notify_path()
    )
    groups = [(variant, [b for b in blocks if b.variant == variant]) for variant in alert_commands.VARIANT_LABELS]
    return {
        "command_groups": [(variant, group) for variant, group in groups if group],
        "variant_labels": alert_commands.VARIANT_LABELS,
        "resource_line": alert_commands.resource_line(),
        "token_macro": alert_commands.TOKEN_MACRO,
        "notify_path": alert_commands.installed_notify_path(),
    }


def show_page(screen: Screen, setting_id: int) -> str:
    """詳細表示 of a setting: its fields, its pending changes and its escalation commands."""
    setting: Any = db.get_or_404(screen.kind.model, setting_id)
    pending = [c for c in approval.pending_for(screen.kind) if c.target_id == setting.id]
    return render_template(
        "notify_settings/show.html",
        channel=screen,
        setting=setting,
        rows=screen.detail_rows(setting),
        pending=[(c, approval.diff(c)) for c in pending],
        actions=ACTIONS,
        delete_form=DeleteForm(),
        **commands_context(screen, setting),
    )


def register(bp: Blueprint, channel: Channel) -> None:
    """Give a blueprint 一覧, 新規作成, 詳細表示, 編集 and 削除 for one channel."""

    @bp.route("/")
    @admin_required
    def index() -> str:
        """List the approved settings and the pending changes."""
        model: Any = channel.kind.model
        settings = db.session.scalars(select(model).order_by(model.name)).all()
        return render_template(
            "notify_settings/index.html",
            channel=channel,
            rows=[(s, channel.field_texts(s)) for s in settings],
            pending=approval.pending_for(channel.kind),
            actions=ACTIONS,
            has_account=bool(channel.form_class.offered_accounts()),
            **_guide_context(),
        )

    @bp.route("/new", methods=["GET", "POST"])
    @admin_required
    def new() -> Response | str:
        """Propose (作成) or create and approve (作成と承認) a setting."""
        return _form_page(channel)

    @bp.route("/<int:setting_id>")
    @admin_required
    def show(setting_id: int) -> str:
        """Show one setting and its pending changes."""
        return show_page(channel, setting_id)

    @bp.route("/<int:setting_id>/edit", methods=["GET", "POST"])
    @admin_required
    def edit(setting_id: int) -> Response | str:
        """Propose (編集) or apply (編集と承認) changes to a setting."""
        return _form_page(channel, _get_setting_or_404(channel, setting_id))

    @bp.route("/<int:setting_id>/delete", methods=["POST"])
    @admin_required
    def delete(setting_id: int) -> Response:
        """Propose (削除) or apply (削除と承認) the deletion of a setting."""
        return delete_view(channel.pages, _get_setting_or_404(channel, setting_id))


def replacements_page(
    scope: str, back_endpoint: str, template: str = "notify_settings/replacements.html", **context: Any
) -> Response | str:
    """再生メッセージ置き換え設定 of one scope: 「再生メッセージ置き換え設定」 records a pending
    edit, 「…と承認」 applies it at once (approvers only). `template` (given `context` too)
    shows it; button calls show it as a tab beside メッセージテンプレート."""
    row = replacement_lists.find(scope)
    form = ReplacementForm(data={"content": row.content if row is not None else ""})
    if form.validate_on_submit():
        row = replacement_lists.for_edit(scope)
        approve_now = bool(form.submit_approve.data)
        values = {"content": form.content.data}
        try:
            approval.submit(REPLACEMENTS_KIND, ACTION_UPDATE, current_user, approve_now, values=values, obj=row)
        except approval.ApprovalError as exc:
            db.session.rollback()
            add_error(form.content, str(exc))
        else:
            db.session.commit()
            if approve_now:
                flash(f"{REPLACEMENTS_KIND.label}({row.name})を変更し、承認しました。", "success")
            else:
                flash(
                    f"{REPLACEMENTS_KIND.label}({row.name})の変更を承認待ちにしました。承認権限を持つユーザの承認後に反映されます。",
                    "info",
                )
            return redirect(request.path)
    pending = [c for c in approval.pending_for(REPLACEMENTS_KIND) if row is not None and c.target_id == row.id]
    return render_template(
        template,
        form=form,
        scope_name=replacement_lists.SCOPE_NAMES[scope],
        back_endpoint=back_endpoint,
        current=row.content if row is not None else "",
        pending=[(c, approval.diff(c)) for c in pending],
        actions=ACTIONS,
        **context,
    )


@simple_bp.route("/replacements", methods=["GET", "POST"])
@admin_required
def replacements() -> Response | str:
    """再生メッセージ置き換え設定 of simple calls (§5.1.4)."""
    return replacements_page(REPLACEMENT_SIMPLE, "simple_calls.index")


register(simple_bp, SIMPLE_CALL)
register(sms_bp, SMS)
