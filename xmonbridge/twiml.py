"""TwiML that xmonbridge shows or serves, built with the Twilio SDK."""

from __future__ import annotations

from twilio.twiml.voice_response import VoiceResponse

# TwiML Bins fill Mustache placeholders from the bin URL's query string (not `$message`).
BIN_PLACEHOLDER = "{{message}}"


def bin_snippet(voice: str) -> str:
    """The TwiML to paste into a TwiML Bin for simple calls, with the configured voice."""
    response = VoiceResponse()
    response.say(BIN_PLACEHOLDER, voice=voice, language="ja-JP")
    xml = response.to_xml(xml_declaration=True)
    # Same document, laid out on lines as in the manual, so it reads well when pasted.
    return xml.replace("<Response>", "\n<Response>\n  ").replace("</Response>", "\n</Response>\n")
