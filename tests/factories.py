"""Plain factories that add, commit and return rows."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from xmonbridge import secretbox
from xmonbridge.extensions import db
from xmonbridge.models import (
    CHANNEL_CALL,
    CHANNEL_SMS,
    SETTING_SIMPLE_CALL,
    SETTING_SMS,
    AlertRecord,
    Attempt,
    ButtonCallRecipient,
    ButtonCallSetting,
    Delivery,
    Notification,
    SimpleCallRecipient,
    SimpleCallSetting,
    SmsRecipient,
    SmsSetting,
    TwilioAccount,
    User,
    XmonSettings,
)

PASSWORD = "admin-pass-123"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fedcba9876543210" * 2
BIN_URL = "https://handler.twilio.com/twiml/EH" + "0" * 32


def make_user(**overrides: Any) -> User:
    """A user who may log in with PASSWORD."""
    password = overrides.pop("password", PASSWORD)
    values: dict[str, Any] = {"login": "user", "name": ""}
    values.update(overrides)
    user = User(**values)
    if password:
        user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


def make_twilio_account(**overrides: Any) -> TwilioAccount:
    """An approved Twilio account."""
    token = overrides.pop("auth_token", AUTH_TOKEN)
    values: dict[str, Any] = {"name": "運用チームアカウント", "account_sid": ACCOUNT_SID, "twiml_bin_url": BIN_URL}
    values.update(overrides)
    account = TwilioAccount(auth_token_encrypted=secretbox.encrypt(token), **values)
    db.session.add(account)
    db.session.commit()
    return account


def set_xmon_url(url: str) -> None:
    """Configure the X-MON URL directly."""
    XmonSettings.for_update().xmon_url = url
    db.session.commit()


def make_recipient(login: str = "sato", name: str = "佐藤 翔太", phone: str = "+819001230001") -> User:
    """A notification target with a phone number who may not log in."""
    return make_user(login=login, name=name, phone=phone, login_disabled=True, password=None)


def _make_setting(model: type, recipient_model: type, account: TwilioAccount, users: list[User], **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "name": "担当者への連絡",
        "account_id": account.id,
        "from_number": "+815012340001",
        "message_template": "fault",
        "custom_message": "",
    }
    values.update(overrides)
    setting = model(**values)
    setting.recipients = [recipient_model(user_id=u.id, position=i) for i, u in enumerate(users)]
    db.session.add(setting)
    db.session.commit()
    return setting


def make_simple_call_setting(account: TwilioAccount, users: list[User], **overrides: Any) -> SimpleCallSetting:
    """An approved 通話設定(シンプル通話)."""
    return _make_setting(SimpleCallSetting, SimpleCallRecipient, account, users, **overrides)  # type: ignore[no-any-return]


def make_sms_setting(account: TwilioAccount, users: list[User], **overrides: Any) -> SmsSetting:
    """An approved SMS 通知設定."""
    return _make_setting(SmsSetting, SmsRecipient, account, users, **overrides)  # type: ignore[no-any-return]


def make_button_call_setting(account: TwilioAccount, users: list[User], **overrides: Any) -> ButtonCallSetting:
    """An approved 通話設定(ボタン操作付き) (一斉通知 unless mode="rotation")."""
    values: dict[str, Any] = {
        "name": "ボタン操作付きの連絡",
        "account_id": account.id,
        "from_number": "+815012340001",
        "mode": "all",
        "ring_seconds": 60,
        "recall_seconds": 60,
        "max_calls": 0,
        "machine_detection": False,
    }
    values.update(overrides)
    setting = ButtonCallSetting(**values)
    setting.recipients = [ButtonCallRecipient(user_id=u.id, position=i) for i, u in enumerate(users)]
    db.session.add(setting)
    db.session.commit()
    return setting


def make_alert(
    setting: SimpleCallSetting | SmsSetting | None = None,
    *,
    deliveries: list[dict[str, Any]] | None = None,
    received_at: datetime | None = None,
    **overrides: Any,
) -> AlertRecord:
    """An alert as intake and the dispatcher leave it.

    With a setting, the alert has one notification for it: `deliveries` gives each recipient's
    Delivery fields (defaults: the setting's recipients, queued), and a delivery's "attempts"
    key a list of Attempt fields (numbered in order, each with its own callback token).
    Without a setting (an ACKNOWLEDGEMENT, say) the alert has no notification.
    """
    values: dict[str, Any] = {
        "notification_type": "PROBLEM",
        "host": "web-server01",
        "service": "HTTP",
        "state": "CRITICAL",
        "output": "Connection refused",
        "setting_type": SETTING_SIMPLE_CALL,
        "setting_id": 1,
        "setting_name": "担当者への連絡",
    }
    call = isinstance(setting, SimpleCallSetting)
    if setting is not None:
        values.update(
            setting_type=SETTING_SIMPLE_CALL if call else SETTING_SMS, setting_id=setting.id, setting_name=setting.name
        )
    values.update(overrides)
    if received_at is not None:
        values["received_at"] = received_at
    alert = AlertRecord(**values)
    if setting is not None:
        notification = Notification(
            channel=CHANNEL_CALL if call else CHANNEL_SMS,
            setting_type=alert.setting_type,
            setting_id=setting.id,
            setting_name=setting.name,
            account_id=setting.account_id,
            account_name=setting.account.name,
            from_number=setting.from_number,
            text=f"ホスト {alert.host} のサービス {alert.service} で障害が発生しました。",
            url=(setting.account.twiml_bin_url or "") if call else "",
            ring_seconds=setting.ring_seconds if call else None,
        )
        if deliveries is None:
            deliveries = [
                {"user_id": r.user_id, "user_name": r.user.display_name, "to_number": r.user.phone or ""}
                for r in setting.recipients
            ]
        for position, spec in enumerate(deliveries):
            fields = dict(spec)
            attempts = fields.pop("attempts", [])
            delivery = Delivery(position=position, **fields)
            for number, attempt_fields in enumerate(attempts, start=1):
                attempt_values = {"number": number, "callback_token": secrets.token_urlsafe(24)}
                attempt_values.update(attempt_fields)
                delivery.attempts.append(Attempt(**attempt_values))
            notification.deliveries.append(delivery)
        alert.notifications.append(notification)
    db.session.add(alert)
    db.session.commit()
    return alert
