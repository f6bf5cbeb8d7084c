"""Simple calls (R5): the text a callee hears and the TwiML Bin URL that speaks it.

A simple call needs no inbound HTTP to xmonbridge: Twilio fetches the account's TwiML Bin,
whose `{{message}}` placeholder is filled from the `message` query parameter of the call's Url.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from . import messages, replacement_lists
from .messages import Alert, Replacements
from .models import REPLACEMENT_SIMPLE
from .twilio_limits import MAX_SAY, MAX_URL, Fitted, shorten


def spoken_text(
    message_template: str, custom_message: str, alert: Alert, replacements: Replacements | None = None
) -> str:
    """The text spoken for an alert: the template or the custom text, after replacements.

    Without `replacements`, the approved simple-call 再生メッセージ置き換え設定 is used.
    """
    text = messages.compose_for(messages.CALL_TEMPLATES, message_template, alert, custom_message)
    if replacements is None:
        replacements = replacement_lists.approved(REPLACEMENT_SIMPLE)
    return replacements.apply(text)


def bin_call_url(bin_url: str, text: str) -> str:
    """The call's Url: the bin URL with text in its `message` query parameter, percent-encoded."""
    if urlsplit(bin_url).query:
        separator = "" if bin_url.endswith("&") else "&"
    else:
        separator = "" if bin_url.endswith("?") else "?"
    # safe="": encode "/", "&", "=", "+" too, so the text cannot end the parameter early.
    return f"{bin_url}{separator}message={quote(text, safe='')}"


@dataclass(frozen=True)
class BinCall:
    """The Url of a simple call and the text it speaks (shortened when too long)."""

    url: str
    spoken: Fitted


def fit_bin_call(bin_url: str, text: str) -> BinCall:
    """The call's Url within Twilio's limits: text cut (ending 以下省略) until it fits.

    The bin speaks the text in one <Say>, so the text also stays within MAX_SAY characters.
    """
    spoken = shorten(text, lambda candidate: len(candidate) <= MAX_SAY and len(bin_call_url(bin_url, candidate)) <= MAX_URL)
    return BinCall(bin_call_url(bin_url, spoken.text), spoken)
