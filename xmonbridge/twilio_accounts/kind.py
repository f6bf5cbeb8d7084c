"""Twilio アカウント情報 as a configuration kind that goes through approval."""

from __future__ import annotations

from typing import Any

from .. import from_numbers, secretbox, setting_usage
from ..approval import ConfigKind, Field, register
from ..config_views import name_taken_reason
from ..models import ACTION_DELETE, TwilioAccount

LABEL = "Twilio アカウント情報"
CPS_LABEL = "1 秒あたりの発信・送信数(CPS)"
FIELDS = (
    Field("name", "名称"),
    Field("account_sid", "ACCOUNT SID"),
    Field("auth_token_encrypted", "AUTH TOKEN", secret=True),
    Field("twiml_bin_url", "TwiML Bin URL"),
    Field("cps", CPS_LABEL),
)


def _check(action: str, obj: Any, values: dict[str, Any]) -> str | None:
    """Refuse to delete an account settings use, to empty a bin URL in use, or to reuse a name."""
    if action == ACTION_DELETE:
        settings = setting_usage.using_account(obj.id)
        if settings:
            return f"{LABEL}「{obj.name}」は次の設定で使用されているため、削除できません: {'、'.join(settings)}"
        return None
    if "twiml_bin_url" in values and not values["twiml_bin_url"] and obj is not None:
        settings = setting_usage.using_bin_url(obj.id)
        if settings:
            return f"次の設定が TwiML Bin URL を使用しているため、TwiML Bin URL を空にできません: {'、'.join(settings)}"
    return name_taken_reason(LABEL, TwilioAccount, obj, values)


def _token_changed(account: TwilioAccount, encrypted: str) -> bool:
    """Compare tokens, not ciphertexts: Fernet encrypts the same token differently each time."""
    try:
        return secretbox.decrypt(encrypted) != secretbox.decrypt(account.auth_token_encrypted)
    except secretbox.SecretError:
        return True


def _credentials_changed(account: TwilioAccount, values: dict[str, Any]) -> bool:
    """Tell whether values point the account at another Twilio account or token."""
    if "account_sid" in values and values["account_sid"] != account.account_sid:
        return True
    token = values.get("auth_token_encrypted")
    return bool(token) and _token_changed(account, str(token))


def _apply(account: TwilioAccount, values: dict[str, Any]) -> None:
    """Write values; new credentials drop the From numbers read with the old ones."""
    # A new account (create) has no id and no cache yet.
    forget = account.id is not None and _credentials_changed(account, values)
    for f in FIELDS:
        if f.name in values:
            setattr(account, f.name, values[f.name])
    if forget:
        from_numbers.forget(account)


KIND = register(
    ConfigKind(
        key="twilio_account",
        label=LABEL,
        model=TwilioAccount,
        fields=FIELDS,
        detail_endpoint="twilio_accounts.show",
        apply=_apply,
        check=_check,
    )
)
