"""通話設定(シンプル通話), SMS 通知設定 and 再生メッセージ置き換え設定 as approval kinds.

A setting's payload holds its recipients as an ordered list of user ids; diffs and detail
pages show them as `+81-90-0123-0001(佐藤 翔太)` lines and the account by its name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import url_for
from sqlalchemy import select

from .. import phone, replacement_lists, telephony
from ..approval import ConfigKind, Field, register
from ..config_views import name_taken_reason
from ..extensions import db
from ..messages import CALL_TEMPLATES, SMS_TEMPLATES, Template, template_choices
from ..models import (
    ACTION_DELETE,
    PendingChange,
    ReplacementList,
    SimpleCallRecipient,
    SimpleCallSetting,
    SmsRecipient,
    SmsSetting,
    TwilioAccount,
    User,
)


def recipient_label(user: User) -> str:
    """A recipient as the manual shows it: +81-90-0123-0001(佐藤 翔太)."""
    return f"{phone.display(user.phone)}({user.display_name})"


def account_text(account_id: Any) -> str:
    account = db.session.get(TwilioAccount, account_id) if account_id else None
    return account.name if account is not None else "(削除された Twilio アカウント情報)"


def phone_text(number: Any) -> str:
    return phone.display(number) or "(未設定)"


def sender_text(sender: Any) -> str:
    """An SMS sender as people read it: a number, an alphanumeric sender ID or a Messaging Service."""
    value = str(sender or "")
    if value.startswith("+") or not value:
        return phone_text(value)
    if telephony.is_messaging_service(value):
        return f"Messaging Service SID: {value}"
    return f"英数字の送信者 ID: {value}"


def recipients_text(user_ids: Any) -> str:
    ids = list(user_ids or [])
    users = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(ids)))}
    lines = [recipient_label(users[i]) if i in users else "(削除されたユーザ)" for i in ids]
    return "\n".join(lines) or "(未設定)"


def _template_text(templates: dict[str, Template]) -> Callable[[Any], str]:
    labels = dict(template_choices(templates))
    return lambda key: labels.get(key, str(key))


def _make_check(label: str, model: type, needs_bin_url: bool) -> Callable[[str, Any, dict[str, Any]], str | None]:
    def check(action: str, obj: Any, values: dict[str, Any]) -> str | None:
        """Refuse a change whose name is taken or whose account or users are gone."""
        if action == ACTION_DELETE:
            return None
        reason = name_taken_reason(label, model, obj, values)
        if reason:
            return reason
        if "account_id" in values:
            account = db.session.get(TwilioAccount, values["account_id"])
            if account is None:
                return "選択された Twilio アカウント情報が削除されているため、適用できません。"
            if needs_bin_url and not account.twiml_bin_url:
                return f"Twilio アカウント情報「{account.name}」に TwiML Bin URL が設定されていないため、適用できません。"
        for user_id in values.get("recipients", []):
            user = db.session.get(User, user_id)
            if user is None:
                return "宛先のユーザが削除されているため、適用できません。"
            if not user.phone:
                return f"宛先のユーザ「{user.display_name}」に電話番号が設定されていないため、適用できません。"
        return None

    return check


def recipient_kind(
    key: str,
    label: str,
    model: type,
    recipient_model: type,
    fields: tuple[Field, ...],
    detail_endpoint: str,
    needs_bin_url: bool = False,
    recipients_changed: Callable[[Any, list[int]], None] | None = None,
) -> ConfigKind:
    """Register a setting kind: plain columns plus the ordered recipient rows (field "recipients").

    recipients_changed(obj, user_ids) runs after an approved change replaced the To rows of an
    existing object (button calls stop calling the users taken off).
    """

    def snapshot(obj: Any) -> dict[str, Any]:
        """Current values, recipients as user ids in list order."""
        values = {f.name: getattr(obj, f.name) for f in fields if f.name != "recipients"}
        values["recipients"] = [r.user_id for r in obj.recipients]
        return values

    def apply(obj: Any, values: dict[str, Any]) -> None:
        """Write values; a recipients list replaces every To row."""
        for name, value in values.items():
            if name == "recipients":
                # delete-orphan removes the old rows; position keeps the list order.
                obj.recipients = [recipient_model(user_id=uid, position=i) for i, uid in enumerate(value)]
            else:
                setattr(obj, name, value)
        if recipients_changed is not None and "recipients" in values and obj.id is not None:
            db.session.flush()
            recipients_changed(obj, list(values["recipients"]))

    return register(
        ConfigKind(
            key=key,
            label=label,
            model=model,
            fields=fields,
            detail_endpoint=detail_endpoint,
            snapshot=snapshot,
            apply=apply,
            check=_make_check(label, model, needs_bin_url),
        )
    )


def _make_kind(
    key: str,
    label: str,
    model: type,
    recipient_model: type,
    templates: dict[str, Template],
    detail_endpoint: str,
    extra_fields: tuple[Field, ...] = (),
    needs_bin_url: bool = False,
    from_field: Field = Field("from_number", "Twilio 電話番号(From)", show=phone_text),
) -> ConfigKind:
    """A simple-call or SMS setting kind: the common fields, the message, then extra_fields."""
    fields = (
        Field("name", "名称"),
        Field("account_id", "Twilio アカウント情報", show=account_text),
        from_field,
        Field("recipients", "宛先の電話番号(To)", show=recipients_text),
        Field("message_template", "メッセージの内容", show=_template_text(templates)),
        Field("custom_message", "指定したメッセージ"),
        *extra_fields,
    )
    return recipient_kind(key, label, model, recipient_model, fields, detail_endpoint, needs_bin_url)


SIMPLE_CALL_KIND = _make_kind(
    "simple_call",
    "通話設定(シンプル通話)",
    SimpleCallSetting,
    SimpleCallRecipient,
    CALL_TEMPLATES,
    "simple_calls.show",
    extra_fields=(Field("ring_seconds", "呼び出しを行い続ける秒数", show=lambda v: f"{v} 秒"),),
    needs_bin_url=True,
)

SMS_KIND = _make_kind(
    "sms_setting",
    "SMS 通知設定",
    SmsSetting,
    SmsRecipient,
    SMS_TEMPLATES,
    "sms_settings.show",
    # An SMS may come from a number, an alphanumeric sender ID or a Messaging Service.
    from_field=Field("from_number", "送信元(From)", show=sender_text),
)


def _replacements_page(change: PendingChange) -> str | None:
    """The edit page of the list a change is about: simple calls' or button calls'."""
    row = db.session.get(ReplacementList, change.target_id) if change.target_id else None
    endpoint = replacement_lists.EDIT_ENDPOINTS.get(row.scope) if row is not None else None
    return url_for(endpoint) if endpoint else None


REPLACEMENTS_KIND = register(
    ConfigKind(
        key="replacement_list",
        label="再生メッセージ置き換え設定",
        model=ReplacementList,
        fields=(Field("content", "単語,読み方", show=lambda v: v or "(未設定)"),),
        detail_endpoint="simple_calls.replacements",
        # One kind for both lists (simple / button): the row's scope tells which page.
        page_url=_replacements_page,
    )
)
