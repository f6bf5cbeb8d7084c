"""Lengths Twilio enforces, and how xmonbridge cuts text to fit them.

Texts are cut between code points (a Python str never holds half a surrogate pair) and
end with OMITTED, so the listener or reader knows something was left out. A URL is fitted
by cutting the text first and encoding it afterwards, so no percent-escape is ever split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# The Calls `Url`: Twilio documents no maximum, but its other URL parameters and inline
# `Twiml` stop at 4,000 characters.
MAX_URL = 4000
# Messages `Body` (error 21617).
MAX_SMS_BODY = 1600
# Text of one <Say> with a Polly voice (warning 13521; basic voices take 4,096).
MAX_SAY = 3000
# Appended to a shortened text.
OMITTED = "以下省略"
# Where a long text is best split between two <Say> verbs.
_BREAKS = ("。", "\n")


@dataclass(frozen=True)
class Fitted:
    """A text as sent, and its length before it was shortened (None if it was not)."""

    text: str
    original_length: int | None = None

    @property
    def shortened(self) -> bool:
        """Tell whether the text was cut to fit."""
        return self.original_length is not None


def shorten(text: str, fits: Callable[[str], bool]) -> Fitted:
    """The longest prefix of text, ending with OMITTED, that fits; text itself if it fits.

    `fits` must be monotonic: if a text fits, so does every shorter prefix of it.
    """
    if fits(text):
        return Fitted(text)
    low, high = 0, len(text)  # fits(text[:low] + OMITTED) is assumed; text[:high] does not fit
    while high - low > 1:
        middle = (low + high) // 2
        if fits(text[:middle] + OMITTED):
            low = middle
        else:
            high = middle
    return Fitted(text[:low] + OMITTED, len(text))


def sms_body_fits(body: str) -> bool:
    """Tell whether an SMS body is within Twilio's 1,600 characters (UTF-16 units, to be safe)."""
    return len(body.encode("utf-16-le")) // 2 <= MAX_SMS_BODY


def fit_sms_body(body: str) -> Fitted:
    """The SMS body cut to Twilio's limit, ending with OMITTED when it was cut."""
    return shorten(body, sms_body_fits)


def split_for_say(text: str, limit: int = MAX_SAY) -> list[str]:
    """Split text into pieces of at most `limit` characters, after 。 or a line break if possible."""
    pieces: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = max(window.rfind(mark) + len(mark) for mark in _BREAKS)
        if cut <= 0:
            cut = limit
        pieces.append(text[:cut])
        text = text[cut:]
    if text or not pieces:
        pieces.append(text)
    return pieces
