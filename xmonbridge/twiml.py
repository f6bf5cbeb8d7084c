"""TwiML that xmonbridge shows or serves, built with the Twilio SDK."""

from __future__ import annotations

from twilio.twiml.voice_response import VoiceResponse

from .twilio_limits import MAX_SAY, split_for_say

# TwiML Bins fill Mustache placeholders from the bin URL's query string (not `$message`).
BIN_PLACEHOLDER = "{{message}}"
LANGUAGE = "ja-JP"


def say(response: VoiceResponse, text: str, voice: str) -> VoiceResponse:
    """Add text to response as <Say> verbs of at most MAX_SAY characters (Polly's limit).

    Longer texts become several <Say>, split after 。 or a line break where possible.
    """
    for piece in split_for_say(text, MAX_SAY):
        response.say(piece, voice=voice, language=LANGUAGE)
    return response


def bin_snippet(voice: str) -> str:
    """The TwiML to paste into a TwiML Bin for simple calls, with the configured voice."""
    response = say(VoiceResponse(), BIN_PLACEHOLDER, voice)
    xml = response.to_xml(xml_declaration=True)
    # Same document, laid out on lines as in the manual, so it reads well when pasted.
    return xml.replace("<Response>", "\n<Response>\n  ").replace("</Response>", "\n</Response>\n")


# A button call waits this long for keys ending with # (§8.1.2.3: 30 seconds).
GATHER_TIMEOUT = 30


# Twilio refuses a TwiML document over 64 kB; a little room is kept below it.
MAX_TWIML_BYTES = 64_000
CUT_NOTE = "(以下省略)"


def button_call(says: list[str], guide: str | None, hangup: bool, voice: str, action: str) -> str:
    """A button call's TwiML: the texts, then the key guide inside <Gather> or a hang-up.

    <Gather> posts to action with the keys before # — or with no Digits after 30 s
    (actionOnEmptyResult), so a silent callee is heard of too. Texts that would take the
    document past MAX_TWIML_BYTES (long messages made longer by the replacements) are cut,
    the longest first, so the guide and the keys always reach the callee.
    """
    texts = list(says)
    while True:
        xml = _button_xml(texts, guide, hangup, voice, action)
        over = len(xml.encode()) - MAX_TWIML_BYTES
        if over <= 0 or not texts:
            return xml
        longest = max(range(len(texts)), key=lambda i: len(texts[i]))
        # A character takes one to six bytes once escaped: cut by a third of the excess, again if need be.
        keep = len(texts[longest]) - over // 3 - len(CUT_NOTE) - 1
        if keep < 100:
            del texts[longest]
        else:
            texts[longest] = texts[longest][:keep] + CUT_NOTE


def _button_xml(says: list[str], guide: str | None, hangup: bool, voice: str, action: str) -> str:
    response = VoiceResponse()
    for text in says:
        say(response, text, voice)
    if guide:
        gather = response.gather(
            input="dtmf",
            finish_on_key="#",
            timeout=GATHER_TIMEOUT,
            action=action,
            method="POST",
            action_on_empty_result=True,
        )
        for piece in split_for_say(guide, MAX_SAY):
            gather.say(piece, voice=voice, language=LANGUAGE)
    if hangup or not guide:
        response.hangup()
    return str(response.to_xml(xml_declaration=True))
