"""A scripted handset: answers the calls the app asks the fake Twilio for, the way Twilio would.

When the dispatcher creates a call, the handset finds the CreateCall request the fake Twilio
received, "answers" by posting to the call's voice URL, reads the <Say> texts of the TwiML,
"presses" keys by posting Digits to the <Gather> action, and "hangs up" by posting the status
callback. Every request is signed as Twilio signs it: with the account's AUTH TOKEN over the
public URL the app gave (the X-MON URL), while it is sent to the app's local path, as through
a reverse proxy.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from twilio.request_validator import RequestValidator

from tests.factories import ACCOUNT_SID, AUTH_TOKEN


@dataclass
class Call:
    """A call the app placed, as the fake Twilio received it."""

    sid: str
    to: str
    form: dict[str, str]

    @property
    def url(self) -> str:
        return self.form["Url"]

    @property
    def status_callback(self) -> str:
        return self.form["StatusCallback"]


@dataclass
class Heard:
    """One TwiML document: what is said, the key guide inside <Gather>, and whether it hangs up."""

    status: int
    says: list[str] = field(default_factory=list)
    guide: str = ""
    action: str | None = None
    hangup: bool = False
    voices: set[str] = field(default_factory=set)
    gather: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "".join(self.says)


def parse(status: int, body: str) -> Heard:
    heard = Heard(status)
    if status != 200:
        return heard
    root = ET.fromstring(body)
    assert root.tag == "Response", body
    for verb in root:
        if verb.tag == "Say":
            heard.says.append(verb.text or "")
            heard.voices.add(verb.get("voice", ""))
            assert verb.get("language") == "ja-JP"
        elif verb.tag == "Gather":
            heard.action = verb.get("action")
            heard.gather = dict(verb.attrib)
            heard.guide = "".join(say.text or "" for say in verb.iter("Say"))
        elif verb.tag == "Hangup":
            heard.hangup = True
        else:  # pragma: no cover - a verb the app never writes
            raise AssertionError(f"unexpected verb {verb.tag} in {body}")
    return heard


class Handset:
    """Phones of every recipient, driven by the test."""

    def __init__(self, client: Any, fake: Any, xmon_url: str, auth_token: str = AUTH_TOKEN, account_sid: str = ACCOUNT_SID) -> None:
        self.client = client
        self.fake = fake
        self.xmon_url = xmon_url.rstrip("/")
        self.auth_token = auth_token
        self.account_sid = account_sid
        self.seen = 0

    # --- calls the app placed ---

    def new_calls(self) -> list[Call]:
        """Calls created since the last look, in the order the fake received them."""
        requests = self.fake.requests_for("CreateCall")
        fresh = requests[self.seen :]
        self.seen = len(requests)
        return [Call(r.response_body["sid"], r.form["To"], dict(r.form)) for r in fresh if r.response_status == 201]

    def expect_calls(self, *numbers: str) -> list[Call]:
        """The new calls, which must go to exactly these numbers (in any order)."""
        calls = self.new_calls()
        assert sorted(c.to for c in calls) == sorted(numbers), [c.to for c in calls]
        return sorted(calls, key=lambda c: numbers.index(c.to))

    def expect_call(self, number: str) -> Call:
        return self.expect_calls(number)[0]

    def expect_no_call(self) -> None:
        calls = self.new_calls()
        assert not calls, [c.to for c in calls]

    # --- Twilio's requests ---

    def post(self, url: str, params: dict[str, str], *, token: str | None = None, signature: str | None = None) -> Any:
        """POST as Twilio: signed over the public url, sent to the app's local path."""
        assert url.startswith(self.xmon_url + "/"), url
        path = url[len(self.xmon_url) :]
        headers = {}
        if signature is None:
            signature = RequestValidator(token or self.auth_token).compute_signature(url, params)
        if signature:
            headers["X-Twilio-Signature"] = signature
        return self.client.post(path, data=params, headers=headers)

    def _params(self, call: Call, **extra: str) -> dict[str, str]:
        params = {
            "AccountSid": self.account_sid,
            "CallSid": call.sid,
            "From": call.form["From"],
            "To": call.to,
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
        }
        params.update(extra)
        return params

    def answer(self, call: Call, **kwargs: Any) -> Heard:
        """Pick up: Twilio fetches the voice URL."""
        self.fake.set_call_status(call.sid, "in-progress")
        response = self.post(call.url, self._params(call, CallStatus="in-progress"), **kwargs)
        return parse(response.status_code, response.get_data(as_text=True))

    def press(self, call: Call, heard: Heard, digits: str | None, **kwargs: Any) -> Heard:
        """Keys ending with # (digits without the #), or None: nothing within the 30 s."""
        assert heard.action, "no <Gather> to press keys in"
        extra = {"CallStatus": "in-progress"}
        if digits is not None:
            extra.update(Digits=digits, FinishedOnKey="#")
        response = self.post(heard.action, self._params(call, **extra), **kwargs)
        return parse(response.status_code, response.get_data(as_text=True))

    def hang_up(self, call: Call, status: str = "completed", *, duration: int = 20, answered_by: str | None = None, **kwargs: Any) -> int:
        """The call ends: Twilio posts the final status to the StatusCallback."""
        self.fake.set_call_status(call.sid, status, duration=duration, answered_by=answered_by)
        extra = {"CallStatus": status, "CallDuration": str(duration)}
        if answered_by:
            extra["AnsweredBy"] = answered_by
        return int(self.post(call.status_callback, self._params(call, **extra), **kwargs).status_code)

    def amd(self, call: Call, answered_by: str, **kwargs: Any) -> int:
        """Answering-machine detection's result (AsyncAmdStatusCallback)."""
        url = call.form["AsyncAmdStatusCallback"]
        params = self._params(call, AnsweredBy=answered_by, MachineDetectionDuration="1800")
        return int(self.post(url, params, **kwargs).status_code)


class HttpResponse:
    """A real server's answer, shaped like a Flask test response for Handset."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self._body = body

    def get_data(self, as_text: bool = False) -> Any:
        return self._body.decode() if as_text else self._body


class HttpClient:
    """Posts to a running server (127.0.0.1), for Handset against `xmonbridge serve`."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def post(self, path: str, data: dict[str, str], headers: dict[str, str]) -> HttpResponse:
        import urllib.error
        import urllib.parse
        import urllib.request

        request = urllib.request.Request(
            self.base + path, data=urllib.parse.urlencode(data).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return HttpResponse(response.status, response.read())
        except urllib.error.HTTPError as error:
            return HttpResponse(error.code, error.read())
