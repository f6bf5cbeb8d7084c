"""Twilio アカウント情報 as a configuration kind that goes through approval."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from .. import setting_usage
from ..approval import ConfigKind, Field, register
from ..extensions import db
from ..models import ACTION_DELETE, TwilioAccount


def _check(action: str, obj: Any, values: dict[str, Any]) -> str | None:
    """Refuse to delete an account settings use, to empty a bin URL in use, or to reuse a name."""
    if action == ACTION_DELETE:
        settings = setting_usage.using_account(obj.id)
        if settings:
            return f"Twilio アカウント情報「{obj.name}」は次の設定で使用されているため、削除できません: {'、'.join(settings)}"
        return None
    if "twiml_bin_url" in values and not values["twiml_bin_url"] and obj is not None:
        settings = setting_usage.using_bin_url(obj.id)
        if settings:
            return f"次の設定が TwiML Bin URL を使用しているため、TwiML Bin URL を空にできません: {'、'.join(settings)}"
    if "name" not in values:
        return None
    other = db.session.scalar(select(TwilioAccount).where(TwilioAccount.name == values["name"]))
    if other is not None and other is not obj:
        return f"名称「{values['name']}」の Twilio アカウント情報が既に存在するため、適用できません。"
    return None


KIND = register(
    ConfigKind(
        key="twilio_account",
        label="Twilio アカウント情報",
        model=TwilioAccount,
        fields=(
            Field("name", "名称"),
            Field("account_sid", "ACCOUNT SID"),
            Field("auth_token_encrypted", "AUTH TOKEN", secret=True),
            Field("twiml_bin_url", "TwiML Bin URL"),
        ),
        detail_endpoint="twilio_accounts.show",
        check=_check,
    )
)
