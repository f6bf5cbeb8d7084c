"""Is a webhook Twilio's? The X-Twilio-Signature check shared by every webhook (B9).

Twilio signs each request with the AUTH TOKEN of the account that placed the call, over the
URL it was given (the public URL built from the X-MON URL, not the address the request
arrived at). The check itself is the SDK's RequestValidator.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from twilio.request_validator import RequestValidator

from .. import secretbox
from ..models import TwilioAccount, utcnow


def auth_tokens(account: TwilioAccount, now: datetime | None = None) -> list[str]:
    """The AUTH TOKENs a webhook of this account may be signed with (raises secretbox.SecretError)."""
    return [secretbox.decrypt(account.auth_token_encrypted)]


def is_signed(account: TwilioAccount, url: str, form: Mapping[str, str], signature: str, now: datetime | None = None) -> bool:
    """Tell whether signature is Twilio's for url and form with one of the account's tokens."""
    return any(RequestValidator(token).validate(url, form, signature) for token in auth_tokens(account, now or utcnow()))
