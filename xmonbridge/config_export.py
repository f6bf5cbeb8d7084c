"""The configuration as one JSON document, for review and for moving to a new box (B6).

It holds the approved configuration: users without passwords, Twilio accounts without
their AUTH TOKEN (unless with_secrets), X-MON 設定, the simple-call, SMS and button-call
settings with their recipients, the message templates and both replacement lists. Nothing
that happened (alerts, calls, ログ) and no id: a setting names its account by 名称 and its
recipients by ログイン名, so the document means the same on a box whose ids differ.

The document starts with a format marker and a version and ends with a SHA-256 digest of
everything else; read() refuses a document whose digest does not match, so a file changed or
damaged after export is recognised. The digest is no signature (anyone can compute it
again), which is why an import still waits for a person with 承認権限 (config_import.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from . import replacement_lists, secretbox
from .extensions import db
from .models import (
    REPLACEMENT_BUTTON,
    REPLACEMENT_SIMPLE,
    ButtonCallSetting,
    SimpleCallSetting,
    SmsSetting,
    TwilioAccount,
    User,
    UserMessageTemplate,
    XmonSettings,
)

FORMAT = "xmonbridge-config"
VERSION = 1
DIGEST_PREFIX = "sha256:"

# Types a value may have: a Python type, None for null, or LOGINS (a list of strings).
LOGINS = "list of strings"
TEXT = (str,)
OPTIONAL_TEXT = (str, None)
NUMBER = (int,)
FLAG = (bool,)

# Every record's keys and types, in the order written; a document with another key is refused.
USER = {
    "login": TEXT,
    "name": TEXT,
    "phone": OPTIONAL_TEXT,
    "email": OPTIONAL_TEXT,
    "mobile_email": OPTIONAL_TEXT,
    "login_disabled": FLAG,
    "is_admin": FLAG,
    "is_approver": FLAG,
}
ACCOUNT = {"name": TEXT, "account_sid": TEXT, "twiml_bin_url": OPTIONAL_TEXT, "cps": NUMBER}
XMON = {
    "xmon_url": OPTIONAL_TEXT,
    "voice": TEXT,
    "ack_mode": TEXT,
    "ack_command_file": TEXT,
    "ack_http_url": TEXT,
    "calls_per_15min": NUMBER,
    "calls_per_hour": NUMBER,
    "retention_days": NUMBER,
    # ハートビート通知: the user by login, the SMS setting by name (None: off).
    "heartbeat_user": OPTIONAL_TEXT,
    "heartbeat_sms_setting": OPTIONAL_TEXT,
    "heartbeat_dispatcher_minutes": NUMBER,
    "heartbeat_twilio_minutes": NUMBER,
}
# X-MON 設定's keys that name another record rather than hold a value of the row.
XMON_REFERENCES = ("heartbeat_user", "heartbeat_sms_setting")
SETTING = {"name": TEXT, "account": TEXT, "from_number": TEXT, "recipients": (LOGINS,)}
MESSAGE = {"message_template": TEXT, "custom_message": TEXT}
SIMPLE_CALL = {**SETTING, **MESSAGE, "ring_seconds": NUMBER}
SMS = {**SETTING, **MESSAGE}
BUTTON_CALL = {
    "mode": TEXT,
    **SETTING,
    "ring_seconds": NUMBER,
    "recall_seconds": NUMBER,
    "max_calls": NUMBER,
    "machine_detection": FLAG,
}
TEMPLATE = {"user": TEXT, "opening_message": TEXT, "closing_message": TEXT}
REPLACEMENTS = {REPLACEMENT_SIMPLE: TEXT, REPLACEMENT_BUTTON: TEXT}
# Secrets, present only in a document exported with secrets.
SECRET_KEYS = {"twilio_accounts": {"auth_token": TEXT}, "xmon_settings": {"ack_http_token": TEXT}}

# Sections: (key, record schema, a list of records or one record).
SECTIONS: tuple[tuple[str, dict[str, tuple[Any, ...]], bool], ...] = (
    ("users", USER, True),
    ("twilio_accounts", ACCOUNT, True),
    ("xmon_settings", XMON, False),
    ("simple_call_settings", SIMPLE_CALL, True),
    ("sms_settings", SMS, True),
    ("button_call_settings", BUTTON_CALL, True),
    ("message_templates", TEMPLATE, True),
    ("replacement_lists", REPLACEMENTS, False),
)
SECTIONS_BY_KEY = {key: (schema, many) for key, schema, many in SECTIONS}
HEADER = ("format", "version", "exported_at", "with_secrets")


class Refused(Exception):
    """A refused export or import: problems one line each; nothing was written or changed."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def export(with_secrets: bool = False) -> dict[str, Any]:
    """The approved configuration as a document (without its digest), in a stable order."""
    document: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "with_secrets": with_secrets,
    }
    document["users"] = [_user(user) for user in db.session.scalars(select(User).order_by(User.login))]
    accounts = db.session.scalars(select(TwilioAccount).order_by(TwilioAccount.name))
    document["twilio_accounts"] = [_account(account, with_secrets) for account in accounts]
    document["xmon_settings"] = _xmon(XmonSettings.get(), with_secrets)
    for key, model in (
        ("simple_call_settings", SimpleCallSetting),
        ("sms_settings", SmsSetting),
        ("button_call_settings", ButtonCallSetting),
    ):
        schema = dict(SECTIONS_BY_KEY[key][0])
        document[key] = [_setting(setting, schema) for setting in db.session.scalars(select(model).order_by(model.name))]
    templates = db.session.scalars(
        select(UserMessageTemplate).join(UserMessageTemplate.user).order_by(User.login)
    )
    document["message_templates"] = [
        {"user": t.user.login, "opening_message": t.opening_message, "closing_message": t.closing_message} for t in templates
    ]
    document["replacement_lists"] = {
        scope: (row.content if (row := replacement_lists.find(scope)) is not None else "")
        for scope in (REPLACEMENT_SIMPLE, REPLACEMENT_BUTTON)
    }
    return document



def _user(user: User) -> dict[str, Any]:
    # No password hash: an imported user logs in only once an administrator sets a password.
    return {name: getattr(user, name) for name in USER}


def _account(account: TwilioAccount, with_secrets: bool) -> dict[str, Any]:
    record = {name: getattr(account, name) for name in ACCOUNT}
    if with_secrets and account.auth_token_encrypted:
        try:
            record["auth_token"] = secretbox.decrypt(account.auth_token_encrypted)
        except secretbox.SecretError:
            raise Refused(
                [f"the AUTH TOKEN of Twilio account {account.name} cannot be decrypted with this fernet.key: "
                 "enter it again in Twilio アカウント情報, or export without --with-secrets."]
            ) from None
    return record


def _xmon(settings: XmonSettings, with_secrets: bool) -> dict[str, Any]:
    record = {name: getattr(settings, name) for name in XMON if name not in XMON_REFERENCES}
    user = db.session.get(User, settings.heartbeat_user_id) if settings.heartbeat_user_id else None
    sms = db.session.get(SmsSetting, settings.heartbeat_sms_setting_id) if settings.heartbeat_sms_setting_id else None
    record["heartbeat_user"] = user.login if user else None
    record["heartbeat_sms_setting"] = sms.name if sms else None
    # What calls use: a voice Twilio no longer offers is replaced by the default.
    record["voice"] = settings.effective_voice
    if with_secrets and settings.ack_http_token_encrypted:
        try:
            record["ack_http_token"] = secretbox.decrypt(settings.ack_http_token_encrypted)
        except secretbox.SecretError:
            raise Refused(
                ["the 通知先のトークン of X-MON 設定 cannot be decrypted with this fernet.key: "
                 "enter it again in X-MON 設定, or export without --with-secrets."]
            ) from None
    return record


def _setting(setting: Any, schema: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for name in schema:
        if name == "account":
            record[name] = setting.account.name
        elif name == "recipients":
            record[name] = [recipient.user.login for recipient in setting.recipients]
        else:
            record[name] = getattr(setting, name)
    return record


def digest_of(document: dict[str, Any]) -> str:
    """The digest of a document's content: SHA-256 of its canonical JSON without "digest"."""
    content = {key: value for key, value in document.items() if key != "digest"}
    canonical = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return DIGEST_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()


def dumps(document: dict[str, Any]) -> str:
    """The document as JSON text for people to read, its digest last."""
    signed = {**{k: v for k, v in document.items() if k != "digest"}, "digest": digest_of(document)}
    return json.dumps(signed, ensure_ascii=False, indent=2) + "\n"


def write_new(path: Path, text: str) -> None:
    """Write text to a new file of mode 0600 (it names people and numbers); never overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise Refused([f"{path} exists: an export never overwrites a file; choose a new file name."]) from None
    except OSError as exc:
        raise Refused([f"cannot create {path}: {exc.strerror}."]) from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def read(text: str) -> dict[str, Any]:
    """Parse and check a document: JSON, format marker, version, digest, keys and types.

    Raise Refused for anything else; the values themselves are checked by config_import with
    the forms' rules.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused([f"it is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."]) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise Refused([f'it is not an xmonbridge configuration export (no "format": "{FORMAT}").'])
    version = document.get("version")
    if version != VERSION or isinstance(version, bool):
        raise Refused(
            [f"it is configuration format version {version!r}; this xmonbridge reads version {VERSION}: "
             "export it again with this version, or import it with the xmonbridge that reads it."]
        )
    if document.get("digest") != digest_of(document):
        raise Refused(
            ["it was changed after it was exported (its digest does not match its content): "
             "export it again from the original instance and import that file unchanged."]
        )
    problems = _shape_problems(document)
    if problems:
        raise Refused(["it does not have the layout of an xmonbridge configuration export:", *problems])
    return document


def _shape_problems(document: dict[str, Any]) -> list[str]:
    """Every key or type that differs from what export() writes, one line each."""
    expected = {*HEADER, *SECTIONS_BY_KEY, "digest"}
    problems = [f"unknown key {key!r}" for key in document if key not in expected]
    problems += [f"missing key {key!r}" for key in sorted(expected - set(document))]
    if not isinstance(document.get("with_secrets"), bool):
        problems.append('"with_secrets" must be true or false')
    with_secrets = document.get("with_secrets") is True
    for key, schema, many in SECTIONS:
        if key not in document:
            continue
        secrets = SECRET_KEYS.get(key, {}) if with_secrets else {}
        value = document[key]
        records = value if many else [value]
        if many and not isinstance(value, list):
            problems.append(f"{key} must be a list")
            continue
        for index, record in enumerate(records):
            where = f"{key}[{index}]" if many else key
            problems += _record_problems(where, record, schema, secrets)
    return problems


def _record_problems(where: str, record: Any, schema: dict[str, Any], secrets: dict[str, Any]) -> list[str]:
    if not isinstance(record, dict):
        return [f"{where} must be an object"]
    problems = [f"{where}: unknown key {key!r}" for key in record if key not in schema and key not in secrets]
    problems += [f"{where}: missing key {key!r}" for key in schema if key not in record]
    for key, value in record.items():
        types = schema.get(key) or secrets.get(key)
        if types is not None and not _has_type(value, types):
            problems.append(f"{where}.{key}: {_type_text(types)} expected, not {json.dumps(value, ensure_ascii=False)[:40]}")
    return problems


def _has_type(value: Any, types: tuple[Any, ...]) -> bool:
    for kind in types:
        if kind is None and value is None:
            return True
        if kind == LOGINS and isinstance(value, list) and all(isinstance(item, str) for item in value):
            return True
        # bool is an int in Python, not in JSON.
        if isinstance(kind, type) and isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return True
    return False


def _type_text(types: tuple[Any, ...]) -> str:
    names = {str: "text", int: "a whole number", bool: "true or false", None: "null", LOGINS: "a list of login names"}
    return " or ".join(names[kind] for kind in types)
