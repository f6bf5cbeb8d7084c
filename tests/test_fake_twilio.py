"""Tests of the fake Twilio server (tests/fake_twilio.py) with the real twilio SDK."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from tests.fake_twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FakeNumber,
    FakeTwilio,
    TwilioSpec,
    default_spec_path,
    make_sid,
)

TO = "+819001230001"
FROM = "+815012340001"
TWIML_URL = "https://bridge.example.com/webhooks/voice?alert=1"
CALLS_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"


@pytest.fixture
def server(fake_twilio: FakeTwilio) -> FakeTwilio:
    """A reset server; the test fails if the client sent anything the spec does not allow."""
    return fake_twilio


@pytest.fixture
def lenient_server(fake_twilio_server: FakeTwilio) -> Iterator[FakeTwilio]:
    """A reset server for tests that send invalid requests on purpose."""
    fake_twilio_server.reset()
    yield fake_twilio_server
    fake_twilio_server.reset()


@pytest.fixture
def twilio_client(server: FakeTwilio, monkeypatch: pytest.MonkeyPatch) -> Client:
    """A real twilio Client pointed at the fake (the documented incantation)."""
    return _make_twilio_client(server, monkeypatch)


def _make_twilio_client(server: FakeTwilio, monkeypatch: pytest.MonkeyPatch, timeout: float = 2.0) -> Client:
    """Build a Client for `server`; the env must not redirect hosts or proxy 127.0.0.1."""
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    monkeypatch.delenv("TWILIO_REGION", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    twilio_client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=TwilioHttpClient(timeout=timeout))
    twilio_client.api.base_url = server.base_url
    return twilio_client


def _raw_request(
    server: FakeTwilio,
    method: str,
    path: str,
    form: dict[str, str] | None = None,
    auth: tuple[str, str] | None = (ACCOUNT_SID, AUTH_TOKEN),
) -> tuple[int, dict[str, Any]]:
    """Send a request without the SDK (urllib); return (status, JSON body)."""
    data = None
    headers: dict[str, str] = {}
    if form is not None:
        data = urllib.parse.urlencode(form).encode("utf-8")
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(server.base_url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# ------------------------------------------------------------------------------------------
# Happy paths through the SDK
# ------------------------------------------------------------------------------------------


def test_it_records_a_created_call_with_its_form_fields(server: FakeTwilio, twilio_client: Client) -> None:
    """CreateCall: the SDK's form fields are recorded and the answer parses."""
    call = twilio_client.calls.create(
        to=TO,
        from_=FROM,
        url=TWIML_URL,
        timeout=30,
        status_callback="https://bridge.example.com/webhooks/status/7",
        status_callback_event=["initiated", "ringing", "answered", "completed"],
    )
    assert call.sid.startswith("CA") and len(call.sid) == 34
    assert call.status == "queued"
    # SDK quirk: CallInstance stores "from" as `_from` (MessageInstance uses `from_`).
    assert (call.to, call._from, call.account_sid) == (TO, FROM, ACCOUNT_SID)

    [recorded] = server.calls()
    assert recorded.operation_id == "CreateCall"
    assert recorded.account_sid == ACCOUNT_SID
    assert (recorded.auth_username, recorded.auth_password) == (ACCOUNT_SID, AUTH_TOKEN)
    assert recorded.form["To"] == TO
    assert recorded.form["From"] == FROM
    assert recorded.form["Url"] == TWIML_URL
    assert recorded.form["Timeout"] == "30"
    assert recorded.getlist("StatusCallbackEvent") == ["initiated", "ringing", "answered", "completed"]
    assert recorded.response_status == 201
    assert recorded.violations == []
    assert server.violations == []


def test_it_answers_create_call_with_the_schema_shape(server: FakeTwilio, twilio_client: Client) -> None:
    """The fake's call resource has exactly the schema's keys and passes its self-check."""
    twilio_client.calls.create(to=TO, from_=FROM, url=TWIML_URL)
    body = server.calls()[0].response_body
    schema = server.spec.schemas["api.v2010.account.call"]
    assert set(body) == set(schema["properties"])
    assert body["phone_number_sid"].startswith("PN")  # From is one of the account's numbers
    assert server.response_problems == []


def test_it_creates_a_message(server: FakeTwilio, twilio_client: Client) -> None:
    """CreateMessage: queued SM resource, UCS-2 segment count for Japanese text."""
    text = "サーバー監視アラート: web01 が応答しません"
    message = twilio_client.messages.create(to=TO, from_=FROM, body=text)
    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert message.status == "queued"
    assert message.body == text
    assert message.num_segments == "1"

    [recorded] = server.messages()
    assert recorded.form == {"To": TO, "From": FROM, "Body": text}
    long_message = twilio_client.messages.create(to=TO, from_=FROM, body="あ" * 71)
    assert long_message.num_segments == "2"


def test_it_lists_incoming_numbers_with_capabilities(server: FakeTwilio, twilio_client: Client) -> None:
    """ListIncomingPhoneNumber: the SDK pages through the default numbers."""
    numbers = twilio_client.incoming_phone_numbers.list()
    assert [n.phone_number for n in numbers] == ["+815012340001", "+815012340002"]
    assert numbers[0].capabilities == {"voice": True, "sms": True, "mms": False, "fax": False}
    assert numbers[1].capabilities["sms"] is False
    assert all(n.sid.startswith("PN") and len(n.sid) == 34 for n in numbers)
    [recorded] = server.requests_for("ListIncomingPhoneNumber")
    assert recorded.query == {}  # the SDK sends PageSize only when asked to


def test_it_lists_numbers_per_account_across_pages(server: FakeTwilio, twilio_client: Client) -> None:
    """A per-account list, followed across pages via next_page_uri."""
    server.phone_numbers[ACCOUNT_SID] = [FakeNumber(f"+81501234000{i}", sms=i % 2 == 0) for i in range(1, 4)]
    numbers = twilio_client.incoming_phone_numbers.list(page_size=2)
    assert [n.phone_number for n in numbers] == ["+815012340001", "+815012340002", "+815012340003"]
    assert len(server.requests_for("ListIncomingPhoneNumber")) == 2
    only = twilio_client.incoming_phone_numbers.list(phone_number="+815012340002")
    assert [n.phone_number for n in only] == ["+815012340002"]


def test_it_fetches_calls_with_the_status_set_by_the_test(server: FakeTwilio, twilio_client: Client) -> None:
    """FetchCall returns the stored call; set_call_status() drives it."""
    sid = twilio_client.calls.create(to=TO, from_=FROM, url=TWIML_URL).sid
    assert twilio_client.calls(sid).fetch().status == "queued"
    server.set_call_status(sid, "completed", duration=42, answered_by="human")
    call = twilio_client.calls(sid).fetch()
    assert (call.status, call.duration, call.answered_by) == ("completed", "42", "human")
    assert call.end_time is not None


def test_it_answers_404_for_an_unknown_call(server: FakeTwilio, twilio_client: Client) -> None:
    """An unknown call SID is a Twilio 404/20404, not a violation."""
    with pytest.raises(TwilioRestException) as excinfo:
        twilio_client.calls(make_sid("CA")).fetch()
    assert (excinfo.value.status, excinfo.value.code) == (404, 20404)


def test_it_answers_other_operations_generically(server: FakeTwilio, twilio_client: Client) -> None:
    """Operations without a dedicated handler still validate and answer spec-shaped JSON."""
    assert twilio_client.api.v2010.accounts(ACCOUNT_SID).fetch().status == "active"
    assert twilio_client.queues.list() == []


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "fragment"),
    [
        ({"From": FROM, "Url": TWIML_URL}, "required field 'To' is missing"),
        ({"To": TO, "From": FROM, "Url": TWIML_URL, "Colour": "red"}, "unknown field 'Colour'"),
        ({"To": "09012345678", "From": FROM, "Url": TWIML_URL}, "neither E.164"),
        ({"To": TO, "From": FROM, "Url": "/webhooks/voice"}, "not an absolute http(s) URL"),
        ({"To": TO, "From": FROM, "Url": TWIML_URL, "Timeout": "30s"}, "not an integer"),
        ({"To": TO, "From": FROM, "Url": TWIML_URL, "Record": "yes"}, "not a boolean"),
        ({"To": TO, "From": FROM, "Url": TWIML_URL, "Method": "PUT"}, "is not one of"),
        ({"To": TO, "From": FROM}, "exactly one of Url, Twiml, ApplicationSid"),
        ({"To": TO, "From": FROM, "Twiml": "<Say>hi</Say>"}, "expected <Response>"),
    ],
)
def test_it_rejects_invalid_create_call_forms(lenient_server: FakeTwilio, form: dict[str, str], fragment: str) -> None:
    """Invalid CreateCall forms are recorded and answered 400/20001."""
    status, body = _raw_request(lenient_server, "POST", CALLS_PATH, form)
    assert status == 400
    assert body["code"] == 20001 and body["status"] == 400
    assert body["more_info"].startswith("https://www.twilio.com/docs/errors/")
    assert any(fragment in violation for violation in lenient_server.violations), lenient_server.violations
    assert lenient_server.requests[-1].violations == lenient_server.violations
    assert lenient_server.calls_by_sid == {}


def test_it_accepts_sip_and_client_endpoints(server: FakeTwilio) -> None:
    """To may be a client:/sip: address instead of E.164."""
    for to in ("client:oncall", "sip:oncall@example.sip.twilio.com"):
        status, body = _raw_request(server, "POST", CALLS_PATH, {"To": to, "From": FROM, "Url": TWIML_URL})
        assert status == 201, body


@pytest.mark.parametrize(
    ("auth", "fragment"),
    [
        (None, "no Authorization header"),
        ((make_sid("AC"), AUTH_TOKEN), "neither the path AccountSid"),
    ],
)
def test_it_rejects_missing_or_foreign_auth(
    lenient_server: FakeTwilio, auth: tuple[str, str] | None, fragment: str
) -> None:
    """Missing or mismatched Basic auth: violation, 401/20003."""
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json"
    status, body = _raw_request(lenient_server, "GET", path, auth=auth)
    assert (status, body["code"]) == (401, 20003)
    assert fragment in lenient_server.violations[0]


def test_it_accepts_api_key_auth(server: FakeTwilio) -> None:
    """An SK... API key may authenticate for the account in the path."""
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json"
    status, _ = _raw_request(server, "GET", path, auth=(make_sid("SK"), "secret"))
    assert status == 200


def test_it_answers_401_for_a_wrong_token_without_a_violation(server: FakeTwilio, twilio_client: Client) -> None:
    """With auth_tokens configured, a wrong token is a legitimate 401/20003."""
    server.auth_tokens[ACCOUNT_SID] = "another-token"
    with pytest.raises(TwilioRestException) as excinfo:
        twilio_client.calls.create(to=TO, from_=FROM, url=TWIML_URL)
    assert (excinfo.value.status, excinfo.value.code) == (401, 20003)


def test_it_shows_list_errors_are_plain_twilio_exceptions(server: FakeTwilio, twilio_client: Client) -> None:
    """SDK quirk: a failing list() raises TwilioException('Unable to fetch page', response),
    not TwilioRestException, so the status/code must be read from the response."""
    server.fail_next(401, operation="ListIncomingPhoneNumber")
    with pytest.raises(TwilioException) as excinfo:
        twilio_client.incoming_phone_numbers.list()
    assert not isinstance(excinfo.value, TwilioRestException)
    message, response = excinfo.value.args
    assert message == "Unable to fetch page"
    assert response.status_code == 401
    assert json.loads(response.text)["code"] == 20003


def test_it_checks_query_parameters(lenient_server: FakeTwilio) -> None:
    """Unknown or ill-typed query parameters are violations."""
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json"
    status, _ = _raw_request(lenient_server, "GET", path + "?Capabilities=sms&PageSize=0")
    assert status == 400
    assert any("unknown query parameter 'Capabilities'" in v for v in lenient_server.violations)
    assert any("PageSize='0' is below the minimum 1" in v for v in lenient_server.violations)


def test_it_rejects_unknown_paths_and_bad_path_params(lenient_server: FakeTwilio) -> None:
    """Paths outside the description are 404; bad path parameters are 400."""
    status, body = _raw_request(lenient_server, "GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Robots.json")
    assert (status, body["code"]) == (404, 20404)
    status, _ = _raw_request(lenient_server, "GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/XY123.json")
    assert status == 400
    assert any("path Sid='XY123'" in v for v in lenient_server.violations)
    status, body = _raw_request(lenient_server, "DELETE", CALLS_PATH)
    assert (status, body["code"]) == (405, 20004)
    assert len(lenient_server.violations) >= 3


def test_it_applies_message_rules_missing_from_the_spec(lenient_server: FakeTwilio) -> None:
    """CreateMessage without From/MessagingServiceSid or Body is rejected (Twilio rule)."""
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    status, _ = _raw_request(lenient_server, "POST", path, {"To": TO})
    assert status == 400
    assert any("From, MessagingServiceSid" in v for v in lenient_server.violations)
    assert any("Body, MediaUrl, ContentSid" in v for v in lenient_server.violations)


# ------------------------------------------------------------------------------------------
# Error injection and stalls
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, 21211), (400, 21614), (401, 20003), (429, 20429), (500, 20500), (503, None)],
)
def test_it_injects_errors_the_sdk_raises(
    server: FakeTwilio, twilio_client: Client, status: int, code: int | None
) -> None:
    """fail_next() surfaces as TwilioRestException with the right status and code."""
    server.fail_next(status, code=code, operation="CreateCall")
    twilio_client.incoming_phone_numbers.list()  # another operation is not affected
    with pytest.raises(TwilioRestException) as excinfo:
        twilio_client.calls.create(to=TO, from_=FROM, url=TWIML_URL)
    assert excinfo.value.status == status
    assert excinfo.value.code == (code if code is not None else 20503)
    # The next call succeeds again, and the failed one created nothing.
    assert twilio_client.calls.create(to=TO, from_=FROM, url=TWIML_URL).status == "queued"
    assert len(server.calls_by_sid) == 1


def test_it_fails_count_requests_with_the_message(server: FakeTwilio, twilio_client: Client) -> None:
    """count= fails several requests; message= appears in the exception text."""
    server.fail_next(429, count=2, message="Slow down")
    for _ in range(2):
        with pytest.raises(TwilioRestException) as excinfo:
            twilio_client.messages.create(to=TO, from_=FROM, body="test")
        assert excinfo.value.code == 20429
        assert "Slow down" in excinfo.value.msg
    assert twilio_client.messages.create(to=TO, from_=FROM, body="test").status == "queued"


def test_it_rejects_fail_next_for_an_unknown_operation(server: FakeTwilio) -> None:
    """A typo in operation= is an immediate error, not a silently unused rule."""
    with pytest.raises(ValueError):
        server.fail_next(500, operation="CreateCalls")


def test_it_stalls_past_the_client_timeout(server: FakeTwilio, monkeypatch: pytest.MonkeyPatch) -> None:
    """stall_next() longer than the client's timeout raises requests' ReadTimeout."""
    twilio_client = _make_twilio_client(server, monkeypatch, timeout=0.3)
    server.stall_next(10)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        twilio_client.calls.create(to=TO, from_=FROM, url=TWIML_URL)
    assert time.monotonic() - started < 2
    # The request still arrived and was recorded; the next one is answered normally.
    assert len(server.calls()) == 1
    assert twilio_client.calls.create(to=TO, from_=FROM, url=TWIML_URL).status == "queued"


def test_it_stops_quickly_during_a_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    """stop() returns quickly even while a request is stalled."""
    with FakeTwilio() as own:
        twilio_client = _make_twilio_client(own, monkeypatch, timeout=0.2)
        own.stall_next(30)
        with pytest.raises(requests.exceptions.Timeout):
            twilio_client.incoming_phone_numbers.list()
        started = time.monotonic()
    assert time.monotonic() - started < 1.5
    assert own.violations == []


# ------------------------------------------------------------------------------------------
# The description itself
# ------------------------------------------------------------------------------------------


def test_it_indexes_the_operations_the_app_uses() -> None:
    """The four operations the app uses are found by method and path."""
    spec = TwilioSpec.load()
    sid = make_sid("CA")
    cases = {
        ("POST", CALLS_PATH): "CreateCall",
        ("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json"): "FetchCall",
        ("POST", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"): "CreateMessage",
        ("GET", f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json"): "ListIncomingPhoneNumber",
    }
    for (method, path), operation_id in cases.items():
        operation, _, _ = spec.match(method, path)
        assert operation is not None and operation.operation_id == operation_id
    assert len(spec.operations) > 150


def test_it_reads_the_spec_path_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """XMONBRIDGE_TWILIO_OPENAPI overrides the default location."""
    monkeypatch.setenv("XMONBRIDGE_TWILIO_OPENAPI", str(tmp_path / "missing.json"))
    assert default_spec_path() == tmp_path / "missing.json"
    with pytest.raises(FileNotFoundError, match="XMONBRIDGE_TWILIO_OPENAPI"):
        TwilioSpec.load()
