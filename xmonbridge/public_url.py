"""URLs Twilio uses to reach xmonbridge, built from the X-MON URL (R1), never from the request.

Behind a reverse proxy or 1:1 NAT the address a request arrives at differs from the one Twilio
was given, and Twilio signs the one it was given: signatures are checked against these.
"""

from __future__ import annotations

import re

STATUS_CALLBACK_PATH = "/twilio/status/"


def base(xmon_url: str | None) -> str | None:
    """The public base URL without a trailing slash, or None when no X-MON URL is set."""
    if not xmon_url:
        return None
    return xmon_url.rstrip("/")


def status_callback_url(xmon_url: str | None, token: str) -> str | None:
    """The StatusCallback URL of one attempt, or None with no X-MON URL (closed network)."""
    root = base(xmon_url)
    return f"{root}{STATUS_CALLBACK_PATH}{token}" if root else None


VOICE_PATH = "/twilio/voice/"
GATHER_PATH = "/twilio/gather/"
AMD_PATH = "/twilio/amd/"


def voice_url(xmon_url: str | None, token: str) -> str | None:
    """Where Twilio fetches a button call's TwiML when the callee answers."""
    root = base(xmon_url)
    return f"{root}{VOICE_PATH}{token}" if root else None


def gather_url(xmon_url: str | None, token: str) -> str | None:
    """Where Twilio posts the keys a button call's callee pressed (<Gather action>)."""
    root = base(xmon_url)
    return f"{root}{GATHER_PATH}{token}" if root else None


def amd_url(xmon_url: str | None, token: str) -> str | None:
    """Where Twilio posts the answering-machine detection result (AsyncAmdStatusCallback)."""
    root = base(xmon_url)
    return f"{root}{AMD_PATH}{token}" if root else None


WEBHOOK_PATHS = (STATUS_CALLBACK_PATH, VOICE_PATH, GATHER_PATH, AMD_PATH)
_TOKEN = re.compile("(" + "|".join(re.escape(p) for p in WEBHOOK_PATHS) + r")[^/?\s\"]*")


def redact(text: str) -> str:
    """A URL, request line or logged request with the webhook tokens replaced by …."""
    return _TOKEN.sub(lambda match: match.group(1) + "…", text)
