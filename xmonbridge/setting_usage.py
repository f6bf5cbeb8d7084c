"""Which notification settings use a Twilio account or a user (deletion guards)."""

from __future__ import annotations

from sqlalchemy import select

from .extensions import db
from .models import (
    ButtonCallRecipient,
    ButtonCallSetting,
    SimpleCallRecipient,
    SimpleCallSetting,
    SmsRecipient,
    SmsSetting,
)

# (label, setting model, recipient model) of every setting type that names accounts and users.
SETTING_TYPES: list[tuple[str, type, type]] = [
    ("通話設定(シンプル通話)", SimpleCallSetting, SimpleCallRecipient),
    ("通話設定(ボタン操作付き)", ButtonCallSetting, ButtonCallRecipient),
    ("SMS 通知設定", SmsSetting, SmsRecipient),
]


def using_account(account_id: int) -> list[str]:
    """Settings that send through the account, as 「種別「名称」」 texts."""
    names = []
    for label, setting, _recipient in SETTING_TYPES:
        query = (
            select(setting.name)  # type: ignore[attr-defined]
            .where(setting.account_id == account_id)  # type: ignore[attr-defined]
            .order_by(setting.name)  # type: ignore[attr-defined]
        )
        names += [f"{label}「{name}」" for name in db.session.scalars(query)]
    return names


def using_bin_url(account_id: int) -> list[str]:
    """Simple-call settings that dial through the account's TwiML Bin."""
    query = select(SimpleCallSetting.name).where(SimpleCallSetting.account_id == account_id).order_by(SimpleCallSetting.name)
    return [f"通話設定(シンプル通話)「{name}」" for name in db.session.scalars(query)]


def with_recipient(user_id: int) -> list[str]:
    """Settings that list the user among 宛先の電話番号(To), as 「種別「名称」」 texts."""
    names = []
    for label, setting, recipient in SETTING_TYPES:
        query = (
            select(setting.name)  # type: ignore[attr-defined]
            .join(recipient, recipient.setting_id == setting.id)  # type: ignore[attr-defined]
            .where(recipient.user_id == user_id)  # type: ignore[attr-defined]
            .distinct()
            .order_by(setting.name)  # type: ignore[attr-defined]
        )
        names += [f"{label}「{name}」" for name in db.session.scalars(query)]
    return names
