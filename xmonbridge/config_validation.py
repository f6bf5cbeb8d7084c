"""A configuration export (config_export.py) checked with the rules of the screens' own forms.

Every record goes through the form an administrator would fill in: ユーザ管理's UserForm,
TwilioAccountForm, XmonSettingsForm, the simple-call, SMS and button-call setting forms,
MessageTemplateForm and ReplacementForm, so an import accepts what the screens accept, with
the same messages. What the forms would look up in the database, where the imported rows do
not exist yet, is offered from the file: each setting form gets the file's accounts and users
as its choices (under stand-in ids), and the references are checked here (the account is in
the file, the recipient is known and has a number, a From number is E.164).

checked() returns the values as the forms normalise them (numbers in E.164, tokens encrypted),
with accounts and users named, not numbered; config_import.py records them for approval.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from werkzeug.datastructures import MultiDict
from wtforms import FieldList, SelectChoice

from . import phone, telephony
from .approval import ConfigKind
from .button_calls.forms import ButtonCallForm
from .button_calls.kind import BUTTON_CALL_KIND
from .config_export import Refused
from .extensions import db
from .message_templates.forms import MessageTemplateForm
from .models import REPLACEMENT_BUTTON, REPLACEMENT_SIMPLE, User, XmonSettings
from .notify_settings.forms import (
    SENDER_ALPHANUMERIC,
    SENDER_NUMBER,
    SENDER_SERVICE,
    RecipientSettingForm,
    ReplacementForm,
    SimpleCallForm,
    SmsSettingForm,
)
from .notify_settings.kind import SIMPLE_CALL_KIND, SMS_KIND
from .twilio_accounts.forms import TwilioAccountForm
from .users import rules
from .users.forms import UserForm
from .xmon_settings.forms import XmonSettingsForm

# The setting sections: (document key, form, approval kind).
SETTING_SECTIONS: tuple[tuple[str, type[RecipientSettingForm], ConfigKind], ...] = (
    ("simple_call_settings", SimpleCallForm, SIMPLE_CALL_KIND),
    ("sms_settings", SmsSettingForm, SMS_KIND),
    ("button_call_settings", ButtonCallForm, BUTTON_CALL_KIND),
)
SCOPES = {REPLACEMENT_SIMPLE: "通話設定(シンプル通話)", REPLACEMENT_BUTTON: "通話設定(ボタン操作付き)"}


def checked(document: dict[str, Any]) -> dict[str, Any]:
    """The document's values as the forms accept and normalise them; Refused lists every problem.

    Forms need a request: the caller runs this inside one (a test request context).
    """
    problems: list[str] = []
    existing = {user.login: user for user in db.session.scalars(select(User))}
    users = _users(document["users"], existing, problems)
    # Who a setting or template may name, and their number (an existing user keeps theirs).
    phones: dict[str, str | None] = {record["login"]: record["phone"] for record in users}
    phones.update({login: user.phone for login, user in existing.items()})
    accounts, tokens = _accounts(document["twilio_accounts"], problems)
    xmon, ack_token = _xmon(document["xmon_settings"], problems)
    values: dict[str, Any] = {"users": users, "twilio_accounts": accounts, "auth_tokens": tokens}
    values.update(xmon_settings=xmon, ack_http_token=ack_token)
    account_bins = {record["name"]: bool(record["twiml_bin_url"]) for record in accounts}
    for key, form_class, kind in SETTING_SECTIONS:
        values[key] = _settings(document[key], form_class, kind.label, account_bins, phones, problems)
    _heartbeat_references(xmon, phones, {record["name"] for record in values["sms_settings"]}, problems)
    values["message_templates"] = _templates(document["message_templates"], existing, users, problems)
    values["replacement_lists"] = _replacements(document["replacement_lists"], problems)
    if problems:
        raise Refused(problems)
    return values


def _form_problems(where: str, form: Any, skip: Collection[str] = ()) -> list[str]:
    """One line per error of a form, named by the record and the field's label."""
    lines = []
    for name, messages in form.errors.items():
        if name in skip:
            continue
        field = form[name]
        # A FieldList (the To rows) is labelled by its rows.
        label = field.entries[0].label.text if isinstance(field, FieldList) and field.entries else field.label.text
        for message in messages:
            # A FieldList (the To rows) gives a list per row.
            for text in message if isinstance(message, list) else [message]:
                lines.append(f"{where}: {label}: {text}")
    return lines


def _duplicate(seen: set[str], key: str, where: str, problems: list[str]) -> bool:
    if key in seen:
        problems.append(f"{where}: ファイルの中で重複しています。")
        return True
    seen.add(key)
    return False


def _users(records: list[dict[str, Any]], existing: dict[str, User], problems: list[str]) -> list[dict[str, Any]]:
    """Users as the ユーザ管理 form accepts them; a new user may have no password here."""
    users: list[dict[str, Any]] = []
    seen: set[str] = set()
    for record in records:
        where = f"ユーザ「{record['login']}」"
        if _duplicate(seen, record["login"], where, problems):
            continue
        data = {name: record[name] or "" for name in ("login", "name", "phone", "email", "mobile_email")}
        data.update({flag: "y" for flag in ("login_disabled", "is_admin", "is_approver") if record[flag]})
        user = existing.get(record["login"])
        form = UserForm(formdata=MultiDict(data), meta={"csrf": False}, user=user)
        form.validate()
        # Never a password: the form's "enter a password" is what import leaves to the admin.
        found = _form_problems(where, form, skip={"password"})
        if not found and user is None:
            # The command line and approval act with every right; only the role rules apply.
            found = [f"{where}: {field.label.text}: {message}" for field, message in rules.save_problems(None, form, User(is_approver=True))]
        problems += found
        users.append(
            {
                "login": form.login.data,
                "name": form.name.data or "",
                "phone": form.phone.data,
                "email": form.email.data,
                "mobile_email": form.mobile_email.data,
                "login_disabled": bool(form.login_disabled.data),
                "is_admin": bool(form.is_admin.data),
                "is_approver": bool(form.is_approver.data),
            }
        )
    return users


def _accounts(records: list[dict[str, Any]], problems: list[str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Accounts as the Twilio アカウント情報 form accepts them; tokens come back encrypted."""
    accounts: list[dict[str, Any]] = []
    tokens: dict[str, str] = {}
    seen: set[str] = set()
    for record in records:
        where = f"Twilio アカウント情報「{record['name']}」"
        if _duplicate(seen, record["name"], where, problems):
            continue
        token = record.get("auth_token") or ""
        data = {
            "name": record["name"],
            "account_sid": record["account_sid"],
            "auth_token": token,
            "twiml_bin_url": record["twiml_bin_url"] or "",
            "cps": str(record["cps"]),
        }
        form = TwilioAccountForm(formdata=MultiDict(data), meta={"csrf": False})
        form.validate()
        # Exported without secrets: the account comes without its AUTH TOKEN.
        problems += _form_problems(where, form, skip=set() if token else {"auth_token"})
        values = form.values()
        encrypted = values.pop("auth_token_encrypted", None)
        if encrypted:
            tokens[values["name"]] = encrypted
        accounts.append(values)
    return accounts, tokens


def _xmon(record: dict[str, Any], problems: list[str]) -> tuple[dict[str, Any], str | None]:
    """X-MON 設定 as its form accepts it; the 通知先のトークン comes back encrypted (or None)."""
    data = {name: str(value) for name, value in record.items() if value is not None}
    form = XmonSettingsForm(formdata=MultiDict(data), meta={"csrf": False}, settings=XmonSettings.get())
    form.validate()
    # No X-MON URL in the file: the current one stays (the form would require one).
    problems += _form_problems("X-MON 設定", form, skip=set() if record["xmon_url"] else {"xmon_url"})
    saved = XmonSettings()
    form.save_to(saved)
    values = {
        "xmon_url": saved.xmon_url or None,
        "voice": saved.voice,
        "ack_mode": saved.ack_mode,
        "ack_command_file": saved.ack_command_file,
        "ack_http_url": saved.ack_http_url,
        "calls_per_15min": saved.calls_per_15min,
        "calls_per_hour": saved.calls_per_hour,
        "retention_days": saved.retention_days,
    }
    for name in ("heartbeat_dispatcher_minutes", "heartbeat_twilio_minutes"):
        minutes = record[name]
        if not 1 <= minutes <= 1440:
            problems.append(f"ハートビート通知: {HEARTBEAT_LABELS[name]}は 1〜1440 分で入力してください。")
        values[name] = minutes
    values["heartbeat_user"] = record["heartbeat_user"]
    values["heartbeat_sms_setting"] = record["heartbeat_sms_setting"]
    return values, saved.ack_http_token_encrypted


HEARTBEAT_LABELS = {
    "heartbeat_dispatcher_minutes": "配信処理が止まってから通知するまでの時間(分)",
    "heartbeat_twilio_minutes": "Twilio が要求を拒否し続けてから通知するまでの時間(分)",
}


def _heartbeat_references(
    xmon: dict[str, Any], phones: dict[str, str | None], sms_names: set[str], problems: list[str]
) -> None:
    """The heartbeat's user must be in the file or here with a number; its SMS setting in the file."""
    login = xmon["heartbeat_user"]
    if login is not None and not phones.get(login):
        problems.append(f"ハートビート通知: 通知先ユーザ「{login}」が連絡先電話番号のあるユーザとしてファイルにもこの xmonbridge にもありません。")
    name = xmon["heartbeat_sms_setting"]
    if name is not None and name not in sms_names:
        problems.append(f"ハートビート通知: 送信に使う SMS 通知設定「{name}」がファイルにありません。")


def _settings(
    records: list[dict[str, Any]],
    form_class: type[RecipientSettingForm],
    label: str,
    account_bins: dict[str, bool],
    phones: dict[str, str | None],
    problems: list[str],
) -> list[dict[str, Any]]:
    """Settings as their form accepts them, the file's accounts and users offered as choices."""
    # Stand-in ids: the form chooses among these, the payload keeps names and logins.
    account_ids = {name: index for index, name in enumerate(account_bins, start=1)}
    user_ids = {login: index for index, login in enumerate(phones, start=1)}
    account_names = {index: name for name, index in account_ids.items()}
    logins = {index: login for login, index in user_ids.items()}
    settings: list[dict[str, Any]] = []
    seen: set[str] = set()
    for record in records:
        where = f"{label}「{record['name']}」"
        if _duplicate(seen, record["name"], where, problems):
            continue
        found = _reference_problems(where, record, form_class, account_bins, phones)
        data = {"name": record["name"], "account_id": str(account_ids.get(record["account"], 0))}
        data.update({f"recipients-{i}": str(user_ids.get(login, 0)) for i, login in enumerate(record["recipients"])})
        data.update(_form_fields(record, form_class))
        form = form_class(formdata=MultiDict(data), meta={"csrf": False})
        form.account_id.choices = [SelectChoice(str(index), name) for name, index in account_ids.items()]
        form.account = None
        form.from_number.choices = [SelectChoice(record["from_number"], record["from_number"])]
        form.recipient_options = [SelectChoice("", "選択してください")] + [
            SelectChoice(str(user_ids[login]), login) for login, number in phones.items() if number
        ]
        form.validate()
        # A reference already reported is not reported again as 「一覧から選択してください」.
        skip = {"account_id"} if any("Twilio アカウント情報「" in line for line in found) else set()
        skip |= {"recipients"} if any("宛先のユーザ" in line for line in found) else set()
        found += _form_problems(where, form, skip=skip)
        problems += found
        if found:
            continue
        values = form.values()
        values["account"] = account_names[values.pop("account_id")]
        values["recipients"] = [logins[user_id] for user_id in values["recipients"]]
        settings.append(values)
    return settings


def _reference_problems(
    where: str, record: dict[str, Any], form_class: type[RecipientSettingForm], account_bins: dict[str, bool], phones: dict[str, str | None]
) -> list[str]:
    """The account and the recipients a setting names, and the form of its From number."""
    found = []
    account = record["account"]
    if account not in account_bins:
        found.append(f"{where}: Twilio アカウント情報「{account}」がファイルにありません。")
    elif form_class.bin_url_required and not account_bins[account]:
        found.append(f"{where}: Twilio アカウント情報「{account}」に TwiML Bin URL が設定されていません。")
    for login in record["recipients"]:
        if login not in phones:
            found.append(f"{where}: 宛先のユーザ「{login}」がファイルにもこの xmonbridge にもありません。")
        elif not phones[login]:
            found.append(f"{where}: 宛先のユーザ「{login}」に電話番号が設定されていません。")
    sender = record["from_number"]
    if _sender_kind(form_class, sender) == SENDER_NUMBER and not _is_e164(sender):
        found.append(f"{where}: Twilio 電話番号(From)「{sender}」は国番号から始まる電話番号(例: +815012340001)ではありません。")
    return found


def _is_e164(number: str) -> bool:
    try:
        return phone.to_e164(number) == number
    except phone.PhoneNumberError:
        return False


def _sender_kind(form_class: type[RecipientSettingForm], sender: str) -> str:
    """How an SMS setting's form names its sender; calls always use a number."""
    if form_class is not SmsSettingForm or sender.startswith("+") or not sender:
        return SENDER_NUMBER
    return SENDER_SERVICE if telephony.is_messaging_service(sender) else SENDER_ALPHANUMERIC


def _form_fields(record: dict[str, Any], form_class: type[RecipientSettingForm]) -> dict[str, str]:
    """The fields of a setting beyond name, account and recipients, as its form posts them."""
    data: dict[str, str] = {}
    sender = record["from_number"]
    kind = _sender_kind(form_class, sender)
    data["sender_kind"] = kind
    data[{SENDER_NUMBER: "from_number", SENDER_ALPHANUMERIC: "alphanumeric_sender", SENDER_SERVICE: "messaging_service_sid"}[kind]] = sender
    for name in ("message_template", "custom_message", "mode"):
        if name in record:
            data[name] = record[name]
    for name in ("ring_seconds", "recall_seconds", "max_calls"):
        if name in record:
            data[name] = str(record[name])
    if record.get("machine_detection"):
        data["machine_detection"] = "y"
    return data


def _templates(
    records: list[dict[str, Any]], existing: dict[str, User], users: list[dict[str, Any]], problems: list[str]
) -> list[dict[str, Any]]:
    """Message templates as the メッセージテンプレート form accepts them."""
    imported = {record["login"]: record for record in users}
    templates: list[dict[str, Any]] = []
    seen: set[str] = set()
    for record in records:
        login = record["user"]
        where = f"メッセージテンプレート「{login}」"
        if _duplicate(seen, login, where, problems):
            continue
        user = existing.get(login)
        if user is None and login in imported:
            user = User(login=login, name=imported[login]["name"], phone=imported[login]["phone"])
        if user is None:
            problems.append(f"{where}: ユーザ「{login}」がファイルにもこの xmonbridge にもありません。")
            continue
        data = {"opening_message": record["opening_message"], "closing_message": record["closing_message"]}
        form = MessageTemplateForm(formdata=MultiDict(data), meta={"csrf": False}, user=user)
        form.validate()
        problems += _form_problems(where, form)
        templates.append(
            {"user": login, "opening_message": form.opening_message.data or "", "closing_message": form.closing_message.data or ""}
        )
    return templates


def _replacements(record: dict[str, str], problems: list[str]) -> dict[str, str]:
    """Both replacement lists as the 再生メッセージ置き換え設定 form accepts them."""
    lists = {}
    for scope, content in record.items():
        form = ReplacementForm(formdata=MultiDict({"content": content}), meta={"csrf": False})
        form.validate()
        problems += _form_problems(f"再生メッセージ置き換え設定({SCOPES[scope]})", form)
        lists[scope] = form.content.data or ""
    return lists
