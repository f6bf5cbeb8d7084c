"""Twilio アカウント情報 as a configuration kind that goes through approval."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from .. import from_numbers, secretbox, setting_usage
from ..approval import ConfigKind, Field, register
from ..config_views import name_taken_reason
from ..models import ACTION_DELETE, TwilioAccount, utcnow

LABEL = "Twilio アカウント情報"
CPS_LABEL = "1 秒あたりの発信・送信数(CPS)"
PREVIOUS_TOKEN_LABEL = "変更前の AUTH TOKEN を受け付ける時間"
# B9: hours the previous AUTH TOKEN is still accepted on webhooks after a change, by default.
DEFAULT_PREVIOUS_TOKEN_HOURS = 24
# The columns of the account.
FIELDS = (
    Field("name", "名称"),
    Field("account_sid", "ACCOUNT SID"),
    Field("auth_token_encrypted", "AUTH TOKEN", secret=True),
    Field("twiml_bin_url", "TwiML Bin URL"),
    Field("cps", CPS_LABEL),
)


def _hours_text(value: Any) -> str:
    if value == 0:
        return "0 時間(すぐに受け付けなくなります)"
    return f"{value} 時間"


# Carried by a change of AUTH TOKEN only, and used when it is applied.
PREVIOUS_TOKEN_HOURS = Field("previous_token_hours", PREVIOUS_TOKEN_LABEL, show=_hours_text, transient=True)


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


def _snapshot(account: TwilioAccount) -> dict[str, Any]:
    return {f.name: getattr(account, f.name) for f in FIELDS}


def _rotate(account: TwilioAccount, values: dict[str, Any]) -> None:
    """Keep the token being replaced for the chosen hours (B9); 0 hours, or another
    ACCOUNT SID (whose webhooks the old token never signed), keeps none."""
    hours = values.get(PREVIOUS_TOKEN_HOURS.name)
    hours = DEFAULT_PREVIOUS_TOKEN_HOURS if hours is None else int(hours)
    same_account = values.get("account_sid", account.account_sid) == account.account_sid
    if hours > 0 and same_account:
        account.previous_auth_token_encrypted = account.auth_token_encrypted
        account.previous_token_until = utcnow() + timedelta(hours=hours)
    else:
        account.previous_auth_token_encrypted = None
        account.previous_token_until = None


def _apply(account: TwilioAccount, values: dict[str, Any]) -> None:
    """Write values; new credentials drop the From numbers read with the old ones, and a new
    AUTH TOKEN keeps the previous one for a while."""
    # A new account (create) has no id and no cache yet.
    existing = account.id is not None
    forget = existing and _credentials_changed(account, values)
    token = values.get("auth_token_encrypted")
    if existing and token and _token_changed(account, str(token)):
        _rotate(account, values)
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
        fields=(*FIELDS, PREVIOUS_TOKEN_HOURS),
        detail_endpoint="twilio_accounts.show",
        snapshot=_snapshot,
        apply=_apply,
        check=_check,
    )
)
