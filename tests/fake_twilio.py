"""A fake Twilio REST server (API 2010-04-01) for the test suite.

The server listens on 127.0.0.1 (a random free port) in a background thread, uses the
standard library only, and checks EVERY request against Twilio's own OpenAPI description
(``tests/twilio/twilio_api_v2010.json``, a copy kept in the repository; override with the
environment variable ``XMONBRIDGE_TWILIO_OPENAPI``):

* the operation (method + path template, path parameter patterns),
* HTTP Basic auth (username = the AccountSid in the path, or an ``SK...`` API key),
* query parameters (unknown ones are errors) and form fields (required, unknown, types,
  enums, patterns, ``uri`` / ``phone-number`` / ``endpoint`` / ``twiml`` / ``date-time`` formats),
* a few documented Twilio rules the description cannot express (see ``EXTRA_RULES``), each
  answered with Twilio's own error code (Url over 4,000 characters 21205, Body over 1,600 21617),
* the TwiML Bin a call's Url points at (``tests/fake_bin.py``): rendered from ``bin_twiml`` with the
  ``message`` query value, parsed, its <Say> voices, language and lengths checked (13521).

Every mismatch is appended to ``server.violations`` and answered with a Twilio-shaped error
(400/20001 for bad parameters, 401/20003 for auth problems, 404/20404 for unknown paths,
405/20004 for a wrong method), so a fixture can finish with ``server.assert_no_violations()``.

Pointing the twilio SDK (9.x) at it -- the exact incantation::

    from twilio.rest import Client
    from twilio.http.http_client import TwilioHttpClient

    with FakeTwilio() as server:
        client = Client(ACCOUNT_SID, AUTH_TOKEN,
                        http_client=TwilioHttpClient(timeout=0.5))  # timeout optional
        client.api.base_url = server.base_url   # "http://127.0.0.1:PORT", no trailing slash
        client.calls.create(to="+819001230001", from_="+815012340001",
                            url="https://example.com/twiml", timeout=30)

Why this works (twilio 9.13): ``client.api`` is a cached ``twilio.rest.api.Api`` (a
``twilio.base.domain.Domain``) and ``Domain.absolute_url()`` reads ``self.base_url`` on every
request, so the assignment can happen before or after ``client.calls`` etc. were touched; the
``v2010`` version object only prepends ``2010-04-01/``. It redirects the ``api`` domain only
(``client.messaging``, ``client.lookups`` ... still point at twilio.com). Do NOT pass
``edge=``/``region=`` and make sure the environment has no ``TWILIO_EDGE`` / ``TWILIO_REGION``:
``ClientBase.get_hostname()`` would then rewrite the host. ``requests`` honours
``HTTP(S)_PROXY``, so keep ``NO_PROXY=127.0.0.1`` if a proxy is configured. A client-side timeout
surfaces as ``requests.exceptions.ReadTimeout`` (not wrapped by the SDK). HTTP errors of
create/fetch/update surface as ``twilio.base.exceptions.TwilioRestException`` with ``.status``
and ``.code``; errors of ``list()``/``stream()`` surface as a plain ``TwilioException("Unable to
fetch page", response)`` -- read ``response.status_code`` and the JSON ``code`` yourself.

Quick reference::

    server.requests / server.calls() / server.messages() / server.violations / server.clear()
    server.fail_next(429)                  # next request -> 429 + code 20429
    server.fail_next(400, code=21211, operation="CreateCall")
    server.stall_next(5)                   # next request sleeps 5 s (stop() interrupts it)
    server.fail_next(500, after_create=True, operation="CreateCall")  # call made, answer 500
    server.stall_next(5, after_create=True)  # call/message made, then the answer stalls
    server.drop_next(after_create=True)      # call/message made, connection closed unanswered
    server.spoken[call_sid]                # the <Say> texts a TwiML Bin call speaks
    server.bin_twiml = "...{{message}}..."   # TwiML of every handler.twilio.com bin (bins[url]: one)
    server.set_call_status(call_sid, "completed", duration=12)
    server.phone_numbers[ACCOUNT_SID] = [FakeNumber("+815012340003", sms=False)]
    server.auth_tokens[ACCOUNT_SID] = AUTH_TOKEN   # wrong token -> 401/20003 (not a violation)
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import functools
import hashlib
import json
import math
import os
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

from tests import fake_bin

__all__ = [
    "ACCOUNT_SID",
    "AUTH_TOKEN",
    "ANY_ACCOUNT",
    "EXTRA_RULES",
    "FakeNumber",
    "FakeTwilio",
    "Operation",
    "RecordedRequest",
    "TwilioSpec",
    "default_spec_path",
    "make_sid",
]

SPEC_ENV_VAR = "XMONBRIDGE_TWILIO_OPENAPI"
API_VERSION = "2010-04-01"

# Credentials the tests may use; the AccountSid must match the spec's ^AC[0-9a-fA-F]{32}$.
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-auth-token-0123456789abcdef"

# Key of `FakeTwilio.phone_numbers` used for accounts without their own entry.
ANY_ACCOUNT = "*"

# Default error codes/messages per HTTP status for `fail_next()` and validation errors.
DEFAULT_ERROR_CODES: dict[int, int] = {
    400: 20001,
    401: 20003,
    403: 20403,
    404: 20404,
    405: 20004,
    429: 20429,
    500: 20500,
    502: 20502,
    503: 20503,
}
DEFAULT_ERROR_MESSAGES: dict[int, str] = {
    20001: "Invalid parameter",
    20003: "Authenticate",
    20004: "Method not allowed",
    20403: "Forbidden",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20502: "Bad Gateway",
    20503: "Service Unavailable",
    21211: "Invalid 'To' Phone Number",
    21214: "'To' phone number cannot be reached",
    21219: "'To' phone number not verified",
    21608: "The number is unverified. Trial accounts cannot send messages to unverified numbers",
    21614: "'To' number is not a valid mobile number",
}

# Longest Calls `Url` Twilio takes (its URL parameters and inline Twiml stop at 4,000 characters).
MAX_URL = 4000
_ERROR_CODE_RE = re.compile(r"\(error ([0-9]{5})\)")

# Final call statuses (README / Twilio docs); they get an end_time.
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})

_E164_RE = re.compile(r"\+[1-9][0-9]{1,14}")
# Address prefixes Twilio accepts besides E.164 for To/From (voice endpoints and channels).
_ENDPOINT_PREFIX_RE = re.compile(r"(client|sip|sim|whatsapp|messenger|rcs|app):\S+", re.IGNORECASE)
_INT_RE = re.compile(r"-?[0-9]+")
_SK_RE = re.compile(r"SK[0-9a-fA-F]{32}")
_SUCCESS_CODES = ("200", "201", "202", "204")


def default_spec_path() -> Path:
    """Return the OpenAPI file: $XMONBRIDGE_TWILIO_OPENAPI or the copy in tests/twilio/."""
    override = os.environ.get(SPEC_ENV_VAR)
    if override:
        return Path(override).expanduser().resolve()
    return Path(__file__).resolve().parent / "twilio" / "twilio_api_v2010.json"


def make_sid(prefix: str, seed: str | None = None) -> str:
    """Return prefix + 32 hex digits: random, or derived from `seed` (deterministic)."""
    if seed is None:
        return prefix + uuid.uuid4().hex
    return prefix + hashlib.md5(seed.encode("utf-8")).hexdigest()


def _rfc2822(moment: datetime | None = None) -> str:
    """Format a UTC timestamp the way Twilio does: 'Tue, 31 Aug 2010 20:36:28 +0000'."""
    return email.utils.format_datetime(moment or datetime.now(timezone.utc))


def _first_values(multi: dict[str, list[str]]) -> dict[str, str]:
    """Collapse a multi-dict to its first values (like Flask's request.form[key])."""
    return {key: values[0] for key, values in multi.items() if values}


# --------------------------------------------------------------------------------------------
# The OpenAPI description
# --------------------------------------------------------------------------------------------


@dataclass
class Operation:
    """One operation of the OpenAPI description, with a regex for its path template."""

    operation_id: str
    method: str
    template: str
    regex: re.Pattern[str]
    path_params: dict[str, dict[str, Any]]
    query_params: dict[str, dict[str, Any]]
    body_schemas: dict[str, dict[str, Any]]
    success_status: int
    response_schema: dict[str, Any] | None

    @property
    def form_schema(self) -> dict[str, Any] | None:
        """The application/x-www-form-urlencoded body schema, if any."""
        return self.body_schemas.get("application/x-www-form-urlencoded")


class TwilioSpec:
    """Index of the operations in Twilio's OpenAPI description, plus value checks."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
        self.operations: dict[str, Operation] = {}
        # (number of parameters, -literal length) sorts the most specific template first.
        ranked: list[tuple[int, int, Operation]] = []
        for template, item in document["paths"].items():
            for method, op in item.items():
                if method not in ("get", "post", "put", "delete", "patch"):
                    continue
                operation = self._build(template, method.upper(), op)
                self.operations[operation.operation_id] = operation
                literal = re.sub(r"\{[^}]+\}", "", template)
                ranked.append((template.count("{"), -len(literal), operation))
        ranked.sort(key=lambda item: (item[0], item[1]))
        self._ranked = [operation for _, _, operation in ranked]

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> TwilioSpec:
        """Load (and cache per file) the description; default path from default_spec_path()."""
        resolved = Path(path).resolve() if path is not None else default_spec_path()
        if not resolved.is_file():
            raise FileNotFoundError(
                f"Twilio OpenAPI description not found at {resolved}; expected the copy in "
                f"tests/twilio/ of the repository, or set {SPEC_ENV_VAR}"
            )
        return _load_spec_cached(str(resolved))

    def resolve(self, schema: dict[str, Any] | None) -> dict[str, Any]:
        """Follow `$ref` (#/components/schemas/...) until a concrete schema is reached."""
        seen = 0
        while schema and "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self.schemas[name]
            seen += 1
            if seen > 20:
                raise ValueError(f"$ref loop at {name}")
        return schema or {}

    def _build(self, template: str, method: str, op: dict[str, Any]) -> Operation:
        """Turn one OpenAPI operation into an `Operation`."""
        path_params: dict[str, dict[str, Any]] = {}
        query_params: dict[str, dict[str, Any]] = {}
        for param in op.get("parameters", []):
            if param.get("in") == "path":
                path_params[param["name"]] = self.resolve(param.get("schema"))
            elif param.get("in") == "query":
                query_params[param["name"]] = {
                    "schema": param.get("schema", {}),
                    "required": bool(param.get("required")),
                }
        regex_parts: list[str] = []
        for piece in re.split(r"(\{[^}]+\})", template):
            if piece.startswith("{") and piece.endswith("}"):
                regex_parts.append(f"(?P<{piece[1:-1]}>[^/]+)")
            else:
                regex_parts.append(re.escape(piece))
        body_schemas: dict[str, dict[str, Any]] = {}
        for content_type, content in (op.get("requestBody") or {}).get("content", {}).items():
            body_schemas[content_type] = self.resolve(content.get("schema"))
        success_status = 200
        response_schema: dict[str, Any] | None = None
        for code in _SUCCESS_CODES:
            if code in op.get("responses", {}):
                success_status = int(code)
                content = op["responses"][code].get("content", {})
                json_content = content.get("application/json")
                if json_content and "schema" in json_content:
                    response_schema = self.resolve(json_content["schema"])
                break
        return Operation(
            operation_id=op["operationId"],
            method=method,
            template=template,
            regex=re.compile("".join(regex_parts)),
            path_params=path_params,
            query_params=query_params,
            body_schemas=body_schemas,
            success_status=success_status,
            response_schema=response_schema,
        )

    def match(self, method: str, path: str) -> tuple[Operation | None, dict[str, str], list[str]]:
        """Find the operation for method+path: (operation, path params, methods the path allows)."""
        allowed: list[str] = []
        for operation in self._ranked:
            found = operation.regex.fullmatch(path)
            if not found:
                continue
            if operation.method == method.upper():
                return operation, found.groupdict(), allowed
            allowed.append(operation.method)
        return None, {}, sorted(set(allowed))

    # -- value checks -------------------------------------------------------------------

    def check_value(self, label: str, raw: str, schema: dict[str, Any] | None) -> list[str]:
        """Check one form/query/path value (a string) against its schema; return problems."""
        schema = self.resolve(schema)
        problems: list[str] = []
        kind = schema.get("type", "string")
        if kind == "integer":
            if not _INT_RE.fullmatch(raw):
                return [f"{label}={raw!r} is not an integer"]
            number: float = int(raw)
        elif kind == "number":
            try:
                number = float(raw)
            except ValueError:
                return [f"{label}={raw!r} is not a number"]
            if not math.isfinite(number):
                return [f"{label}={raw!r} is not a finite number"]
        elif kind == "boolean":
            if raw not in ("true", "false"):
                return [f"{label}={raw!r} is not a boolean (expected 'true' or 'false')"]
            return problems
        else:
            number = 0
        if kind in ("integer", "number"):
            if "minimum" in schema and number < schema["minimum"]:
                problems.append(f"{label}={raw!r} is below the minimum {schema['minimum']}")
            if "maximum" in schema and number > schema["maximum"]:
                problems.append(f"{label}={raw!r} is above the maximum {schema['maximum']}")
        if "enum" in schema and raw not in [str(value) for value in schema["enum"]]:
            problems.append(f"{label}={raw!r} is not one of {schema['enum']}")
        if kind == "string":
            if "minLength" in schema and len(raw) < schema["minLength"]:
                problems.append(f"{label}={raw!r} is shorter than {schema['minLength']}")
            if "maxLength" in schema and len(raw) > schema["maxLength"]:
                problems.append(f"{label}={raw!r} is longer than {schema['maxLength']}")
            if "pattern" in schema and not re.search(schema["pattern"], raw):
                problems.append(f"{label}={raw!r} does not match {schema['pattern']}")
            ignore_format = (schema.get("x-twilio") or {}).get("ignoreFormat")
            if schema.get("format") and not ignore_format:
                problem = _check_format(schema["format"], raw)
                if problem:
                    problems.append(f"{label}={raw!r} {problem}")
        return problems

    def check_fields(
        self, where: str, given: dict[str, list[str]], schema: dict[str, Any], required: list[str]
    ) -> list[str]:
        """Check a multi-dict of fields against an object schema (form body)."""
        problems: list[str] = []
        properties: dict[str, Any] = schema.get("properties", {})
        for name in required:
            values = given.get(name)
            if not values:
                problems.append(f"{where}: required field {name!r} is missing")
            elif all(value == "" for value in values):
                problems.append(f"{where}: required field {name!r} is empty")
        for name, values in given.items():
            if name not in properties:
                problems.append(f"{where}: unknown field {name!r} (not in the OpenAPI description)")
                continue
            prop = self.resolve(properties[name])
            if prop.get("type") == "array":
                for value in values:
                    problems += self.check_value(f"{where}: {name}", value, prop.get("items"))
                continue
            if len(values) > 1:
                problems.append(f"{where}: field {name!r} given {len(values)} times")
            for value in values:
                # Twilio's description types a message's From as a phone number, but Twilio
                # also takes an alphanumeric sender ID there (up to 11 letters, digits and
                # spaces, at least one letter).
                if name == "From" and "(CreateMessage)" in where and _ALPHANUMERIC_SENDER_RE.fullmatch(value):
                    continue
                problems += self.check_value(f"{where}: {name}", value, prop)
        return problems

    def check_json(self, label: str, value: Any, schema: dict[str, Any] | None) -> list[str]:
        """Loosely check a JSON response value against a response schema (used for self-checks)."""
        schema = self.resolve(schema)
        if value is None:
            return [] if schema.get("nullable") or not schema else [f"{label} is null"]
        kind = schema.get("type")
        problems: list[str] = []
        expected: dict[str, tuple[type, ...]] = {
            "string": (str,),
            "integer": (int,),
            "number": (int, float),
            "boolean": (bool,),
            "object": (dict,),
            "array": (list,),
        }
        if kind in expected and (
            not isinstance(value, expected[kind]) or (kind == "integer" and isinstance(value, bool))
        ):
            return [f"{label}={value!r} is not of type {kind}"]
        if "enum" in schema and value not in schema["enum"]:
            problems.append(f"{label}={value!r} is not one of {schema['enum']}")
        if kind == "string" and "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{label}={value!r} does not match {schema['pattern']}")
        if kind == "object" and "properties" in schema:
            for key, item in value.items():
                if key not in schema["properties"]:
                    problems.append(f"{label}.{key} is not in the response schema")
                else:
                    problems += self.check_json(f"{label}.{key}", item, schema["properties"][key])
        if kind == "array":
            for index, item in enumerate(value):
                problems += self.check_json(f"{label}[{index}]", item, schema.get("items"))
        return problems

    def skeleton(self, schema: dict[str, Any] | None) -> dict[str, Any]:
        """Return every property of an object schema set to None (the base of a response)."""
        schema = self.resolve(schema)
        return {name: None for name in schema.get("properties", {})}

    def list_key(self, operation: Operation) -> str | None:
        """Name of the array property of a list response (e.g. 'incoming_phone_numbers')."""
        schema = operation.response_schema or {}
        for name, prop in schema.get("properties", {}).items():
            if self.resolve(prop).get("type") == "array":
                return name
        return None


@functools.lru_cache(maxsize=4)
def _load_spec_cached(path: str) -> TwilioSpec:
    """Parse the (1.8 MB) description once per file and process."""
    with open(path, encoding="utf-8") as handle:
        return TwilioSpec(json.load(handle))


_ALPHANUMERIC_SENDER_RE = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")


def _check_format(fmt: str, raw: str) -> str | None:
    """Check a string `format` of the Twilio description; return a problem or None."""
    if fmt == "uri":
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "is not an absolute http(s) URL"
    elif fmt in ("phone-number", "endpoint"):
        if not (_E164_RE.fullmatch(raw) or _ENDPOINT_PREFIX_RE.fullmatch(raw)):
            return "is neither E.164 (+819012345678) nor a client:/sip:/whatsapp:... address"
    elif fmt == "date-time":
        try:
            datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return "is not an ISO 8601 date-time"
    elif fmt == "date":
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw):
            return "is not a YYYY-MM-DD date"
    elif fmt == "iso-country-code":
        if not re.fullmatch(r"[A-Z]{2}", raw):
            return "is not an ISO 3166 alpha-2 country code"
    elif fmt == "twiml":
        try:
            root = ElementTree.fromstring(raw)
        except ElementTree.ParseError as exc:
            return f"is not well-formed XML ({exc})"
        if root.tag != "Response":
            return f"is TwiML with root <{root.tag}>, expected <Response>"
        if len(raw.encode("utf-8")) > 64 * 1024:
            return "is TwiML larger than 64 kB"
    return None


# --------------------------------------------------------------------------------------------
# Twilio rules the OpenAPI description does not express (documented in Twilio's docs/README)
# --------------------------------------------------------------------------------------------


def _rule_create_call(form: dict[str, list[str]]) -> list[str]:
    """CreateCall needs exactly one of Url/Twiml/ApplicationSid; known StatusCallbackEvents."""
    problems: list[str] = []
    sources = [name for name in ("Url", "Twiml", "ApplicationSid") if form.get(name)]
    if len(sources) != 1:
        problems.append(f"exactly one of Url, Twiml, ApplicationSid is required (got {sources})")
    url = (form.get("Url") or [""])[0]
    if len(url) > MAX_URL:
        problems.append(f"Url has {len(url)} characters, more than {MAX_URL} (error 21205)")
    twiml = (form.get("Twiml") or [""])[0]
    if len(twiml) > fake_bin.MAX_TWIML:
        problems.append(f"Twiml has {len(twiml)} characters, more than {fake_bin.MAX_TWIML} (error 32018)")
    elif twiml:
        # Only the <Say> lengths: the `twiml` format check already judged the document itself.
        speech = fake_bin.check_twiml(twiml, None, japanese=False)
        problems += [p for p in speech.problems if f"(error {fake_bin.SAY_TOO_LONG})" in p]
    for event in form.get("StatusCallbackEvent", []):
        # One value per event; a single "initiated ringing" string is accepted by Twilio too.
        for word in event.split():
            if word not in ("initiated", "ringing", "answered", "completed"):
                problems.append(f"StatusCallbackEvent={event!r}: unknown event {word!r}")
    return problems


def _rule_create_message(form: dict[str, list[str]]) -> list[str]:
    """CreateMessage needs From or MessagingServiceSid, and Body/MediaUrl/ContentSid."""
    problems: list[str] = []
    if not (form.get("From") or form.get("MessagingServiceSid")):
        problems.append("one of From, MessagingServiceSid is required")
    if not (form.get("Body") or form.get("MediaUrl") or form.get("ContentSid")):
        problems.append("one of Body, MediaUrl, ContentSid is required")
    body = (form.get("Body") or [""])[0]
    if len(body) > 1600:
        problems.append(f"Body has {len(body)} characters, more than 1600 (error 21617)")
    return problems


# Twilio answers a rule's problem with the code in its "(error NNNNN)", 20001 otherwise.
EXTRA_RULES: dict[str, Callable[[dict[str, list[str]]], list[str]]] = {
    "CreateCall": _rule_create_call,
    "CreateMessage": _rule_create_message,
}


# --------------------------------------------------------------------------------------------
# Records and fixtures data
# --------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request received by the fake, as parsed and judged."""

    method: str
    path: str
    operation_id: str | None
    path_params: dict[str, str]
    account_sid: str | None
    form_multi: dict[str, list[str]]
    query_multi: dict[str, list[str]]
    headers: dict[str, str]
    auth_username: str | None
    auth_password: str | None
    body: bytes = b""
    violations: list[str] = field(default_factory=list)
    response_status: int | None = None
    response_body: Any = None
    received_at: float = field(default_factory=time.time)

    @property
    def form(self) -> dict[str, str]:
        """Form fields, first value of each (use `form_multi` / `getlist()` for repeats)."""
        return _first_values(self.form_multi)

    @property
    def query(self) -> dict[str, str]:
        """Query parameters, first value of each (`query_multi` has all of them)."""
        return _first_values(self.query_multi)

    def getlist(self, name: str) -> list[str]:
        """All values of a form field (e.g. StatusCallbackEvent)."""
        return list(self.form_multi.get(name, []))

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class FakeNumber:
    """An IncomingPhoneNumber the fake lists for an account."""

    phone_number: str
    voice: bool = True
    sms: bool = True
    mms: bool = False
    fax: bool = False
    friendly_name: str | None = None
    sid: str | None = None

    def resource(self, spec: TwilioSpec, account_sid: str) -> dict[str, Any]:
        """The JSON resource, shaped like api.v2010.account.incoming_phone_number."""
        sid = self.sid or make_sid("PN", f"{account_sid}:{self.phone_number}")
        now = _rfc2822()
        body = spec.skeleton(spec.schemas["api.v2010.account.incoming_phone_number"])
        body.update(
            {
                "account_sid": account_sid,
                "address_requirements": "none",
                "api_version": API_VERSION,
                "beta": False,
                "capabilities": {"voice": self.voice, "sms": self.sms, "mms": self.mms, "fax": self.fax},
                "date_created": now,
                "date_updated": now,
                "emergency_status": "Inactive",
                "emergency_address_status": "unregistered",
                "friendly_name": self.friendly_name or self.phone_number,
                "origin": "twilio",
                "phone_number": self.phone_number,
                "sid": sid,
                "sms_fallback_method": "POST",
                "sms_method": "POST",
                "status_callback_method": "POST",
                "uri": f"/{API_VERSION}/Accounts/{account_sid}/IncomingPhoneNumbers/{sid}.json",
                "voice_caller_id_lookup": False,
                "voice_fallback_method": "POST",
                "voice_method": "POST",
                "voice_receive_mode": "voice",
                "status": "in-use",
                "type": "local",
            }
        )
        return body


def default_phone_numbers() -> dict[str, list[FakeNumber]]:
    """Two numbers for any account: +815012340001 (voice+SMS), +815012340002 (voice only)."""
    return {
        ANY_ACCOUNT: [
            FakeNumber("+815012340001", voice=True, sms=True, friendly_name="050-1234-0001"),
            FakeNumber("+815012340002", voice=True, sms=False, friendly_name="050-1234-0002"),
        ]
    }


@dataclass
class _Injection:
    """A pending fail_next()/stall_next() rule."""

    remaining: int
    operation: str | None
    status: int = 0
    code: int = 0
    message: str = ""
    seconds: float = 0.0
    # Applied after the request was carried out (the call or message exists).
    after: bool = False
    drop: bool = False


class _ApiError(Exception):
    """Raised by operation handlers to answer with a Twilio error."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _sms_segments(body: str) -> int:
    """Number of SMS segments: GSM-7 160/153 per segment, otherwise UCS-2 70/67."""
    gsm_basic = (
        "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    )
    gsm_extended = "^{}\\[~]|€\f"
    if all(char in gsm_basic or char in gsm_extended for char in body):
        units = sum(2 if char in gsm_extended else 1 for char in body)
        single, multi = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    if units <= single:
        return 1
    return math.ceil(units / multi)


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeTwilio:
    """Fake Twilio REST API on 127.0.0.1; see the module docstring for usage."""

    def __init__(self, spec_path: str | os.PathLike[str] | None = None, *, extra_rules: bool = True) -> None:
        self.spec = TwilioSpec.load(spec_path)
        self.extra_rules = extra_rules
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        # Mismatches between the fake's own answers and the response schemas (should stay []).
        self.response_problems: list[str] = []
        self.phone_numbers: dict[str, list[FakeNumber]] = default_phone_numbers()
        # AccountSid -> expected auth token; a wrong token gets 401/20003 (not a violation).
        self.auth_tokens: dict[str, str] = {}
        self.calls_by_sid: dict[str, dict[str, Any]] = {}
        self.messages_by_sid: dict[str, dict[str, Any]] = {}
        # TwiML of the bins (handler.twilio.com) a call's Url may point at: `bins` by bin URL
        # (no query), `bin_twiml` for any other bin; None: bins are not fetched.
        self.bins: dict[str, str] = {}
        self.bin_twiml: str | None = None
        # Voices a bin's <Say> may use (None: any).
        self.voices: frozenset[str] | None = None
        # Call SID -> the texts of the <Say> verbs its bin made Twilio speak.
        self.spoken: dict[str, list[str]] = {}
        # True: a created call is ringing (it has a StartTime) and a message is sent (DateSent)
        # at once, as when Twilio dials before a look-up; False: both stay queued.
        self.dial_at_once = False
        self._failures: list[_Injection] = []
        self._stalls: list[_Injection] = []
        # Bumped by reset(): a request still in flight from an earlier test (say, one that
        # stalled past its client's timeout) must not take the injections meant for the next.
        self._generation = 0
        self._lock = threading.RLock()
        self._stop_event = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._handlers: dict[str, Callable[[Operation, RecordedRequest], tuple[int, Any]]] = {
            "CreateCall": self._create_call,
            "FetchCall": self._fetch_call,
            "UpdateCall": self._update_call,
            "ListCall": self._list_calls,
            "CreateMessage": self._create_message,
            "FetchMessage": self._fetch_message,
            "ListMessage": self._list_messages,
            "ListIncomingPhoneNumber": self._list_incoming_numbers,
            "FetchAccount": self._fetch_account,
        }

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeTwilio:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        self._stop_event.clear()
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = True
        httpd.fake = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-twilio", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; interrupts pending stalls. Safe to call twice."""
        self._stop_event.set()
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after start())."""
        if self._httpd is None:
            raise RuntimeError("FakeTwilio is not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """'http://127.0.0.1:PORT' -- assign it to client.api.base_url."""
        return f"http://127.0.0.1:{self.port}"

    # -- inspection ---------------------------------------------------------------------

    def requests_for(self, operation_id: str) -> list[RecordedRequest]:
        """Recorded requests of one operation, in arrival order."""
        with self._lock:
            return [request for request in self.requests if request.operation_id == operation_id]

    def calls(self) -> list[RecordedRequest]:
        """Recorded CreateCall requests."""
        return self.requests_for("CreateCall")

    def messages(self) -> list[RecordedRequest]:
        """Recorded CreateMessage requests."""
        return self.requests_for("CreateMessage")

    def clear(self) -> None:
        """Forget recorded requests and violations (state such as calls/numbers stays)."""
        with self._lock:
            self.requests.clear()
            self.violations.clear()
            self.response_problems.clear()

    def reset(self) -> None:
        """clear() plus: forget calls/messages, bins, pending injections, tokens; default numbers.

        `bin_twiml` and `voices` are configuration of the run and stay.
        """
        with self._lock:
            self.clear()
            self.calls_by_sid.clear()
            self.messages_by_sid.clear()
            self.spoken.clear()
            self.bins.clear()
            self._failures.clear()
            self._stalls.clear()
            self._generation += 1
            self.auth_tokens.clear()
            self.phone_numbers = default_phone_numbers()
            self.dial_at_once = False

    def assert_no_violations(self) -> None:
        """Raise AssertionError listing every violation (and response self-check problem)."""
        with self._lock:
            problems = list(self.violations) + [f"[fake response] {p}" for p in self.response_problems]
        if problems:
            raise AssertionError("fake Twilio saw invalid requests:\n  " + "\n  ".join(problems))

    # -- scripting ----------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        code: int | None = None,
        message: str | None = None,
        count: int = 1,
        operation: str | None = None,
        after_create: bool = False,
    ) -> None:
        """Answer the next `count` valid requests (of `operation`, if given) with an error.

        With `after_create` the request is carried out first (the call or message exists) and
        the error answered anyway: Twilio's 5xx on a create does not say whether it was made.
        """
        self._check_operation_name(operation)
        code = code if code is not None else DEFAULT_ERROR_CODES.get(status, status)
        message = message or DEFAULT_ERROR_MESSAGES.get(code, f"Injected error {code}")
        with self._lock:
            self._failures.append(
                _Injection(count, operation, status=status, code=code, message=message, after=after_create)
            )

    def stall_next(
        self, seconds: float, count: int = 1, operation: str | None = None, after_create: bool = False
    ) -> None:
        """Delay the next `count` requests by `seconds` before they are answered.

        The stalled request is still recorded and processed (a stalled CreateCall does create
        the call, as a real timeout leaves the outcome unknown); stop() interrupts the wait.
        With `after_create` it is processed before the wait, so the call or message exists
        while the client is still waiting (or has given up).
        """
        self._check_operation_name(operation)
        with self._lock:
            self._stalls.append(_Injection(count, operation, seconds=seconds, after=after_create))

    def drop_next(self, count: int = 1, operation: str | None = None, after_create: bool = True) -> None:
        """Close the connection of the next `count` requests without an answer (a reset).

        With `after_create` (the default) the request is carried out first.
        """
        self._check_operation_name(operation)
        with self._lock:
            self._failures.append(_Injection(count, operation, after=after_create, drop=True))

    def heard(self, call_sid: str) -> str:
        """Everything a TwiML Bin call says, its <Say> texts joined."""
        with self._lock:
            return "".join(self.spoken.get(call_sid, []))

    def set_call_status(
        self,
        sid: str,
        status: str,
        duration: int | None = None,
        answered_by: str | None = None,
    ) -> dict[str, Any]:
        """Change a created call as Twilio would (what FetchCall returns next); returns it."""
        allowed = self.spec.schemas["call_enum_status"]["enum"]
        if status not in allowed:
            raise ValueError(f"status {status!r} not in {allowed}")
        with self._lock:
            call = self.calls_by_sid[sid]
            now = _rfc2822()
            call["status"] = status
            call["date_updated"] = now
            # Twilio sets StartTime when it dials: every status but queued (and canceled while queued).
            if status not in ("queued", "canceled") and call["start_time"] is None:
                call["start_time"] = now
            if status in FINAL_CALL_STATUSES:
                call["end_time"] = now
                call["duration"] = str(duration if duration is not None else 0)
            elif duration is not None:
                call["duration"] = str(duration)
            if answered_by is not None:
                call["answered_by"] = answered_by
            return dict(call)

    def set_message_status(self, sid: str, status: str, error_code: int | None = None) -> dict[str, Any]:
        """Change a created message (what FetchMessage returns next); returns it."""
        allowed = self.spec.schemas["message_enum_status"]["enum"]
        if status not in allowed:
            raise ValueError(f"status {status!r} not in {allowed}")
        with self._lock:
            message = self.messages_by_sid[sid]
            message["status"] = status
            message["date_updated"] = _rfc2822()
            if status in ("sent", "delivered"):
                message["date_sent"] = message["date_updated"]
            if error_code is not None:
                message["error_code"] = error_code
            return dict(message)

    def numbers_for(self, account_sid: str) -> list[FakeNumber]:
        """The FakeNumbers listed for an account (falls back to phone_numbers['*'])."""
        with self._lock:
            if account_sid in self.phone_numbers:
                return list(self.phone_numbers[account_sid])
            return list(self.phone_numbers.get(ANY_ACCOUNT, []))

    def _check_operation_name(self, operation: str | None) -> None:
        """Reject operation ids that are not in the description (typos)."""
        if operation is not None and operation not in self.spec.operations:
            raise ValueError(f"unknown operationId {operation!r}")

    def _take(
        self, pending: list[_Injection], operation_id: str | None, after: bool = False, generation: int | None = None
    ) -> _Injection | None:
        """Consume one use of the first matching injection (applied before or after processing)."""
        with self._lock:
            if generation is not None and generation != self._generation:
                return None
            for injection in pending:
                if injection.after != after:
                    continue
                if injection.operation is None or injection.operation == operation_id:
                    injection.remaining -= 1
                    if injection.remaining <= 0:
                        pending.remove(injection)
                    return injection
        return None

    # -- request processing -------------------------------------------------------------

    def _process(self, handler: _Handler) -> None:
        """Parse, record, validate and answer one request."""
        generation = self._generation
        method = handler.command.upper()
        parts = urlsplit(handler.path)
        path = parts.path
        query_multi = parse_qs(parts.query, keep_blank_values=True)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        headers = dict(handler.headers.items())
        username, password, auth_problem = _parse_basic_auth(handler.headers.get("Authorization"))

        operation, path_params, allowed = self.spec.match(method, path)
        account_sid = path_params.get("AccountSid")
        if account_sid is None and operation is not None and operation.template.endswith("/Accounts/{Sid}.json"):
            account_sid = path_params.get("Sid")
        form_multi: dict[str, list[str]] = {}
        violations: list[str] = []
        error: tuple[int, int, str] | None = None
        where = f"{method} {path}" + (f" ({operation.operation_id})" if operation else "")

        content_type = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if body:
            if content_type == "application/x-www-form-urlencoded":
                try:
                    form_multi = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
                except (UnicodeDecodeError, ValueError) as exc:
                    violations.append(f"{where}: body is not valid UTF-8 form data ({exc})")
            else:
                violations.append(f"{where}: unsupported body Content-Type {content_type!r}")

        if operation is None:
            if allowed:
                violations.append(f"{where}: method not allowed; the description has {allowed}")
                error = (405, 20004, "Method not allowed")
            else:
                violations.append(f"{where}: no operation of the OpenAPI description matches")
                error = (404, 20404, f"The requested resource {path} was not found")
        else:
            # Path parameters (AccountSid, Sid ...): pattern and length.
            param_problems: list[str] = []
            for name, schema in operation.path_params.items():
                param_problems += self.spec.check_value(f"{where}: path {name}", path_params.get(name, ""), schema)
            # Authentication.
            auth_problems: list[str] = []
            if auth_problem:
                auth_problems.append(f"{where}: {auth_problem}")
            elif account_sid and username != account_sid and not _SK_RE.fullmatch(username or ""):
                auth_problems.append(
                    f"{where}: Basic auth user {username!r} is neither the path AccountSid {account_sid!r} "
                    "nor an SK... API key"
                )
            elif not password:
                auth_problems.append(f"{where}: Basic auth password is empty")
            # Query parameters.
            query_problems: list[str] = []
            for name, values in query_multi.items():
                info = operation.query_params.get(name)
                if info is None:
                    query_problems.append(f"{where}: unknown query parameter {name!r}")
                    continue
                schema = self.spec.resolve(info["schema"])
                items = self.spec.resolve(schema.get("items")) if schema.get("type") == "array" else schema
                if schema.get("type") != "array" and len(values) > 1:
                    query_problems.append(f"{where}: query parameter {name!r} given {len(values)} times")
                for value in values:
                    # Messages are also listed by the alphanumeric sender ID they were sent from.
                    if name == "From" and "(ListMessage)" in where and _ALPHANUMERIC_SENDER_RE.fullmatch(value):
                        continue
                    query_problems += self.spec.check_value(f"{where}: query {name}", value, items)
            for name, info in operation.query_params.items():
                if info["required"] and name not in query_multi:
                    query_problems.append(f"{where}: required query parameter {name!r} is missing")
            # Body.
            body_problems: list[str] = []
            form_schema = operation.form_schema
            if form_schema is not None:
                if content_type != "application/x-www-form-urlencoded" and (body or form_schema.get("required")):
                    body_problems.append(
                        f"{where}: Content-Type is {content_type!r}, expected application/x-www-form-urlencoded"
                    )
                body_problems += self.spec.check_fields(where, form_multi, form_schema, form_schema.get("required", []))
                rule = EXTRA_RULES.get(operation.operation_id) if self.extra_rules else None
                if rule is not None:
                    body_problems += [f"{where}: {problem} [Twilio rule]" for problem in rule(form_multi)]
            elif form_multi:
                body_problems.append(f"{where}: the operation takes no body, got fields {sorted(form_multi)}")
            violations += param_problems + auth_problems + query_problems + body_problems
            if auth_problems and not (param_problems or query_problems or body_problems):
                error = (401, 20003, "Authenticate")
            elif violations:
                codes = [int(m.group(1)) for v in violations for m in [_ERROR_CODE_RE.search(v)] if m]
                error = (400, codes[0] if codes else 20001, "; ".join(violations))

        record = RecordedRequest(
            method=method,
            path=path,
            operation_id=operation.operation_id if operation else None,
            path_params=path_params,
            account_sid=account_sid,
            form_multi=form_multi,
            query_multi=query_multi,
            headers=headers,
            auth_username=username,
            auth_password=password,
            body=body,
            violations=violations,
        )
        with self._lock:
            self.requests.append(record)
            self.violations.extend(violations)

        stall = self._take(self._stalls, record.operation_id, generation=generation)
        if stall is not None and self._stop_event.wait(stall.seconds):
            return  # stopped while stalling: close without an answer

        if error is None and operation is not None:
            expected_token = self.auth_tokens.get(account_sid or "")
            if expected_token is not None and username == account_sid and password != expected_token:
                error = (401, 20003, "Authenticate")
        if error is None:
            failure = self._take(self._failures, record.operation_id, generation=generation)
            if failure is not None and failure.drop:
                return  # closed without an answer
            if failure is not None:
                error = (failure.status, failure.code, failure.message)
        if error is None and operation is not None:
            try:
                status, payload = self._answer(operation, record)
            except _ApiError as exc:
                error = (exc.status, exc.code, exc.message)
            # Carried out; what the client hears of it may still go wrong.
            stall = self._take(self._stalls, record.operation_id, after=True, generation=generation)
            if stall is not None and self._stop_event.wait(stall.seconds):
                return
            failure = self._take(self._failures, record.operation_id, after=True, generation=generation)
            if failure is not None and failure.drop:
                return
            if failure is not None:
                error = (failure.status, failure.code, failure.message)
        if error is not None:
            status, payload = error[0], _error_body(*error)
        record.response_status = status
        record.response_body = payload
        _send_json(handler, status, payload)

    def _answer(self, operation: Operation, record: RecordedRequest) -> tuple[int, Any]:
        """Build the success answer of a valid request, and self-check it against the schema."""
        handler = self._handlers.get(operation.operation_id)
        if handler is not None:
            status, payload = handler(operation, record)
        elif operation.success_status == 204 or operation.response_schema is None:
            status, payload = operation.success_status, None
        elif self.spec.list_key(operation):
            status, payload = 200, self._page(operation, record, [])
        else:
            payload = self.spec.skeleton(operation.response_schema)
            if "account_sid" in payload:
                payload["account_sid"] = record.account_sid
            status = operation.success_status
        if payload is not None and operation.response_schema is not None and status < 300:
            problems = self.spec.check_json(operation.operation_id, payload, operation.response_schema)
            if problems:
                with self._lock:
                    self.response_problems.extend(problems)
        return status, payload

    # -- operation handlers -------------------------------------------------------------

    def _page(self, operation: Operation, record: RecordedRequest, items: list[dict[str, Any]]) -> dict[str, Any]:
        """A list page (Twilio 2010 paging: page, page_size, uri, first/next/previous_page_uri)."""
        key = self.spec.list_key(operation) or "items"
        query = record.query
        page_size = int(query.get("PageSize") or 50)
        page = int(query.get("Page") or 0)
        paging = ("Page", "PageSize", "PageToken")
        filters = [(k, v) for k, values in record.query_multi.items() if k not in paging for v in values]

        def page_uri(number: int) -> str:
            params = filters + [("PageSize", str(page_size)), ("Page", str(number))]
            if number > 0:
                params.append(("PageToken", f"PA{number}"))
            return f"{record.path}?{urlencode(params)}"

        start = page * page_size
        chunk = items[start : start + page_size]
        has_next = start + page_size < len(items)
        return {
            "end": start + len(chunk) - 1 if chunk else 0,
            "first_page_uri": page_uri(0),
            key: chunk,
            "next_page_uri": page_uri(page + 1) if has_next else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            "start": start,
            "uri": page_uri(page),
        }

    def _create_call(self, operation: Operation, record: RecordedRequest) -> tuple[int, Any]:
        """CreateCall: store and return a queued call resource."""
        form = record.form
        account = record.account_sid or ""
        sid = make_sid("CA")
        now = _rfc2822()
        base = f"/{API_VERSION}/Accounts/{account}/Calls/{sid}"
        number_sids = {number.phone_number: number for number in self.numbers_for(account)}
        from_number = number_sids.get(form.get("From", ""))
        call = self.spec.skeleton(operation.response_schema)
        call.update(
            {
                "sid": sid,
                "date_created": now,
                "date_updated": now,
                "account_sid": account,
                "to": form.get("To"),
                "to_formatted": form.get("To"),
                "from": form.get("From"),
                "from_formatted": form.get("From"),
                "phone_number_sid": from_number.resource(self.spec, account)["sid"] if from_number else None,
                "status": "queued",
                "direction": "outbound-api",
                "api_version": API_VERSION,
                "price_unit": "USD",
                "queue_time": "0",
                "uri": base + ".json",
                "subresource_uris": {
                    name: f"{base}/{path}.json"
                    for name, path in (
                        ("notifications", "Notifications"),
                        ("recordings", "Recordings"),
                        ("payments", "Payments"),
                        ("events", "Events"),
                        ("siprec", "Siprec"),
                        ("streams", "Streams"),
                        ("transcriptions", "Transcriptions"),
                        ("user_defined_message_subscriptions", "UserDefinedMessageSubscriptions"),
                        ("user_defined_messages", "UserDefinedMessages"),
                    )
                },
            }
        )
        with self._lock:
            self.calls_by_sid[sid] = call
            if self.dial_at_once:
                call.update(status="ringing", start_time=now)
        self._fetch_bin(sid, form.get("Url", ""))
        return 201, dict(call)

    def _fetch_bin(self, sid: str, url: str) -> None:
        """Run a TwiML Bin call's TwiML as Twilio would: record what it says and any problem."""
        template = self.bins.get(fake_bin.bin_key(url), self.bin_twiml) if fake_bin.is_bin_url(url) else None
        if template is None:
            return
        speech = fake_bin.check_twiml(fake_bin.render(template, url), self.voices)
        with self._lock:
            self.spoken[sid] = speech.says
            self.violations.extend(f"CreateCall {sid}: TwiML Bin {problem}" for problem in speech.problems)

    def _fetch_call(self, operation: Operation, record: RecordedRequest) -> tuple[int, Any]:
        """FetchCall: the stored call, or 404/20404."""
        sid = record.path_params["Sid"]
        with self._lock:
            call = self.calls_by_sid.get(sid)
            if call is None or call["account_sid"] != record.account_sid:
                raise _ApiError(404, 20404, f"The requested resource {record.path} was not found")
            return 200, dict(call)

    def _update_call(self, operation: Operation, record: RecordedRequest) -> tuple[int, Any]:
        """UpdateCall: Status=canceled/completed ends the call; other fields are accepted."""
        self._fetch_call(operation, record)
        status = record.form.get("Status")
        if status:
            return 200, self.set_call_status(record.path_params["Sid"], status)
        with self._lock:
            return 200, dict(self.calls_by_sid[record.path_params["Sid"]])

    def _list_calls(self, operation: Operation, record: RecordedRequest) -> tuple[int, Any]:
        """ListCall: stored calls of the account, newest first (filters To/From/Status)."""
        with self._lock:
            calls = [dict(c) for c in self.calls_by_sid.values() if c["account_sid"] == record.account_sid]
        query = record.query
        for key, attr in (("To", "to"), ("From", "from"), ("Status", "status")):
            if key in query:
                calls = [c for c in calls if c[attr] == query[key]]
        calls = _filter_times(calls, query, "StartTime", "start_time")
        calls = _filter_times(calls, query, "EndTime", "end_time")
        return 200, self._page(operation, record, list(reversed(calls)))

    def _create_message(self, operation: Operation, record: RecordedRequest) -> tuple[int, Any]:
        """CreateMessage: store and return a queued (or 'accepted') message resource."""
        form = record.form
        account = record.account_sid or ""
        sid = make_sid("SM")
        now = _rfc2822()
        body_text = form.get("Body", "")
        base = f"/{API_VERSION}/Accounts/{account}/Messages/{sid}"
        message = self.spec.skeleton(operation.response_schema)
        message.update(
            {
                "body": body_text,
                "num_segments": str(_sms_segments(body_text)),
                "direction": "outbound-api",
                "from": form.get("From"),
                "to": form.get("To"),
                "date_updated": now,
                "uri": base + ".json",
                "account_sid": account,
                "num_media": str(len(record.getlist("MediaUrl"))),
                # With only a MessagingServiceSid Twilio answers 'accepted' and picks the sender later.
                "status": "queued" if form.get("From") else "accepted",
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "sid": sid,
                "date_created": now,
                "price_unit": "USD",
                "api_version": API_VERSION,
                "subresource_uris": {"media": f"{base}/Media.json", "feedback": f"{base}/Feedback.json"},
            }
        )
        with self._lock:
            self.messages_by_sid[sid] = message
            if self.dial_at_once and form.get("From"):
                message.update(status="sent", date_sent=now)
        return 201, dict(message)

    def _fetch_message(self, operation: Operation, record: RecordedRequest) -> tuple[int, Any]:
        """FetchMessage: the stored message, or 404/20404."""
        with self._lock:
            message = self.messages_by_sid.get(record.path_params["Sid"])
            if message is None or message["account_sid"] != record.account_sid:
                raise _ApiError(404, 20404, f"The requested resource {record.path} was not found")
            return 200, dict(message)

    def _list_messages(self, operation: Operation, record: RecordedRequest) -> tuple[int, Any]:
        """ListMessage: stored messages of the account, newest first (filters To/From/DateSent)."""
        with self._lock:
            messages = [dict(m) for m in self.messages_by_sid.values() if m["account_sid"] == record.account_sid]
        query = record.query
        for key, attr in (("To", "to"), ("From", "from")):
            if key in query:
                messages = [m for m in messages if m[attr] == query[key]]
        messages = _filter_times(messages, query, "DateSent", "date_sent")
        return 200, self._page(operation, record, list(reversed(messages)))

    def _list_incoming_numbers(self, operation: Operation, record: RecordedRequest) -> tuple[int, Any]:
        """ListIncomingPhoneNumber: `phone_numbers` of the account (PhoneNumber/FriendlyName filters)."""
        account = record.account_sid or ""
        numbers = [number.resource(self.spec, account) for number in self.numbers_for(account)]
        wanted = record.query.get("PhoneNumber")
        if wanted:
            # Twilio matches partial numbers with '*' as a one-digit wildcard.
            pattern = re.compile(".*" + re.escape(wanted).replace(r"\*", "[0-9]") + ".*")
            numbers = [n for n in numbers if pattern.fullmatch(n["phone_number"])]
        if record.query.get("FriendlyName"):
            numbers = [n for n in numbers if n["friendly_name"] == record.query["FriendlyName"]]
        return 200, self._page(operation, record, numbers)

    def _fetch_account(self, operation: Operation, record: RecordedRequest) -> tuple[int, Any]:
        """FetchAccount: an active full account (handy for 'test credentials' buttons)."""
        sid = record.path_params["Sid"]
        now = _rfc2822()
        account = self.spec.skeleton(operation.response_schema)
        account.update(
            {
                "date_created": now,
                "date_updated": now,
                "friendly_name": f"Fake account {sid[-4:]}",
                "owner_account_sid": sid,
                "sid": sid,
                "status": "active",
                "subresource_uris": {},
                "type": "Full",
                "uri": f"/{API_VERSION}/Accounts/{sid}.json",
            }
        )
        return 200, account


def _filter_times(items: list[dict[str, Any]], query: dict[str, str], name: str, attr: str) -> list[dict[str, Any]]:
    """Apply `Name`, `Name<` and `Name>` (on or before / after) to an RFC 2822 attribute.

    Items whose attribute is empty (a call not dialled yet, a message not sent) never match.
    """
    bounds = {suffix: query.get(name + suffix) for suffix in ("", "<", ">")}
    if not any(bounds.values()):
        return items
    kept = []
    for item in items:
        if not item.get(attr):
            continue
        moment = email.utils.parsedate_to_datetime(item[attr])
        if bounds[""] and moment.date() != _parse_time(bounds[""]).date():
            continue
        if bounds["<"] and moment > _parse_time(bounds["<"]):
            continue
        if bounds[">"] and moment < _parse_time(bounds[">"]):
            continue
        kept.append(item)
    return kept


def _parse_time(raw: str) -> datetime:
    """An ISO 8601 query value (already checked against the description) as aware UTC."""
    moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _parse_basic_auth(header: str | None) -> tuple[str | None, str | None, str | None]:
    """Decode 'Basic ...' into (username, password, problem)."""
    if not header:
        return None, None, "no Authorization header (HTTP Basic auth is required)"
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None, f"Authorization scheme {scheme!r} is not Basic"
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None, "Authorization header is not valid base64"
    username, sep, password = decoded.partition(":")
    if not sep:
        return username, None, "Basic auth credentials lack a ':'"
    return username, password, None


def _error_body(status: int, code: int, message: str) -> dict[str, Any]:
    """A Twilio error document (legacy shape, parsed by the SDK into TwilioRestException)."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _send_json(handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
    """Write a JSON answer (no body for 204); ignore clients that already hung up."""
    data = b"" if status == 204 or payload is None else json.dumps(payload).encode("utf-8")
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Twilio-Request-Id", make_sid("RQ"))
        handler.end_headers()
        if data:
            handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
        pass


class _Handler(BaseHTTPRequestHandler):
    """Routes every method to FakeTwilio._process()."""

    server_version = "FakeTwilio/1.0"

    def _dispatch(self) -> None:
        self.server.fake._process(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Keep pytest output quiet."""

    def handle(self) -> None:
        """Ignore clients that hang up (e.g. after a client-side timeout)."""
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass

