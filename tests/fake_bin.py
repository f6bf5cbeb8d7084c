"""The TwiML Bins of the fake Twilio: what a simple call's Url makes Twilio say.

A TwiML Bin is a Mustache template: `{{message}}` is replaced by the `message` query parameter
of the bin URL, HTML-escaped (so `<`, `&` and quotes stay text inside the XML). The fake renders
the TwiML the admin was told to paste (xmonbridge.twiml.bin_snippet), parses it and checks what
Twilio would reject when the call runs.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

BIN_HOST = "handler.twilio.com"
# Polly voices take at most 3,000 characters in one <Say> (Twilio warning 13521).
MAX_SAY = 3000
SAY_TOO_LONG = 13521
# Twilio's inline `Twiml` parameter stops at 4,000 characters (error 32018).
MAX_TWIML = 4000
TWIML_TOO_LONG = 32018
_MUSTACHE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def is_bin_url(url: str) -> bool:
    """Tell whether url is a TwiML Bin (https://handler.twilio.com/twiml/EH...)."""
    parts = urlsplit(url)
    return parts.scheme == "https" and parts.hostname == BIN_HOST and parts.path.startswith("/twiml/")


def bin_key(url: str) -> str:
    """The bin URL without its query string (what `FakeTwilio.bins` is keyed by)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def render(template: str, url: str) -> str:
    """Fill the template's {{name}} placeholders from url's query, escaped as Mustache does."""
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    return _MUSTACHE.sub(lambda m: html.escape(query.get(m.group(1), [""])[0], quote=True), template)


@dataclass
class Speech:
    """What a TwiML document makes Twilio say, and what Twilio would object to."""

    says: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check_twiml(document: str, voices: frozenset[str] | None, *, japanese: bool = True) -> Speech:
    """Parse a TwiML document; each <Say> must use an offered voice, ja-JP, at most MAX_SAY characters.

    `voices` None accepts any voice; `japanese` False accepts any language.
    """
    speech = Speech()
    try:
        root = ElementTree.fromstring(document.encode("utf-8"))
    except ElementTree.ParseError as exc:
        speech.problems.append(f"TwiML is not well-formed XML ({exc}) (error 12100)")
        return speech
    if root.tag != "Response":
        speech.problems.append(f"TwiML root is <{root.tag}>, expected <Response> (error 12100)")
    for element in root.iter("Say"):
        text = element.text or ""
        speech.says.append(text)
        voice = element.get("voice")
        if voices is not None and voice not in voices:
            speech.problems.append(f"<Say voice={voice!r}> is not one of the offered voices {sorted(voices)}")
        if japanese and element.get("language") != "ja-JP":
            speech.problems.append(f"<Say language={element.get('language')!r}>, expected 'ja-JP'")
        if len(text) > MAX_SAY:
            speech.problems.append(f"<Say> has {len(text)} characters, more than {MAX_SAY} (error {SAY_TOO_LONG})")
    return speech
