"""Is a webhook Twilio's? The X-Twilio-Signature check shared by every webhook (B9).

Twilio signs each request with the AUTH TOKEN of the account that placed the call, over the
URL it was given (the public URL built from the X-MON URL, not the address the request
arrived at). The check itself is the SDK's RequestValidator.

After an account's AUTH TOKEN is changed, requests Twilio still signs with the previous one
(calls placed before, or Twilio's side changed later than ours) are accepted until
`previous_token_until`, the period chosen on the account form.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from twilio.request_validator import RequestValidator

from .. import secretbox
from ..models import TwilioAccount, utcnow

log = logging.getLogger(__name__)


def previous_token_until(account: TwilioAccount, now: datetime) -> datetime | None:
    """Until when the previous AUTH TOKEN is accepted, or None when it is not (any more)."""
    until = account.previous_token_until
    if not account.previous_auth_token_encrypted or until is None or now >= until:
        return None
    return until


def auth_tokens(account: TwilioAccount, now: datetime | None = None) -> list[str]:
    """The AUTH TOKENs a webhook of this account may be signed with: the current one, and the
    previous one during its period (raises secretbox.SecretError for the current one)."""
    tokens = [secretbox.decrypt(account.auth_token_encrypted)]
    if previous_token_until(account, now or utcnow()) is not None:
        try:
            tokens.append(secretbox.decrypt(account.previous_auth_token_encrypted or ""))
        except secretbox.SecretError:
            # Encrypted with a fernet.key since replaced: only the current token counts.
            log.warning("previous AUTH TOKEN of account %s cannot be decrypted; ignored", account.id)
    return tokens


def is_signed(account: TwilioAccount, url: str, form: Mapping[str, str], signature: str, now: datetime | None = None) -> bool:
    """Tell whether signature is Twilio's for url and form with one of the account's tokens."""
    return any(RequestValidator(token).validate(url, form, signature) for token in auth_tokens(account, now or utcnow()))
