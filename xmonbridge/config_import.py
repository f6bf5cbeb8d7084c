"""設定の取り込み: a configuration export (config_export.py) applied through approval (B6).

`request()` checks a document with the rules of the screens' own forms (ユーザ管理, Twilio
アカウント情報, X-MON 設定, the three setting forms, メッセージテンプレート, 再生メッセージ置き換え設定)
and records one PendingChange of the kind 「設定の取り込み」; nothing else changes until a user
with 承認権限 approves it in 承認待ち, which applies everything in one transaction.

How an import maps onto the instance:
- It is refused while the instance has any Twilio account, setting, message template or
  replacement line (and when that changed before approval): it moves a configuration to a
  new box, it does not merge two.
- Users are matched by ログイン名: a user who exists is left exactly as they are (password,
  roles, number); the others are created without a password, so they cannot log in until an
  administrator sets one in ユーザ管理 → 編集.
- X-MON 設定 takes the file's values; an X-MON URL or 通知先のトークン the file lacks keeps
  the current one, as the form keeps a field left blank.
- Twilio accounts exported without their AUTH TOKEN are created without one; calls through
  them fail until it is entered in Twilio アカウント情報 → 編集.

Settings refer to accounts by name and to recipients by login. The forms check references
against the database, where the imported rows do not exist yet, so this module offers each
setting form the file's accounts and users as its choices (under stand-in ids) and checks
the references themselves (account in the file, recipient known and with a number).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict
from wtforms import FieldList, SelectChoice

from . import approval, phone, replacement_lists, telephony
from .approval import ConfigKind, Field
from .button_calls.forms import ButtonCallForm
from .button_calls.kind import BUTTON_CALL_KIND
from .config_export import Refused
from .extensions import db
from .message_templates.forms import MessageTemplateForm
from .messages import CALL_TEMPLATES, SMS_TEMPLATES, template_choices
from .models import (
    ACK_MODES,
    ACTION_CREATE,
    MODES,
    REPLACEMENT_BUTTON,
    REPLACEMENT_SIMPLE,
    VOICE_LABELS,
    ButtonCallSetting,
    PendingChange,
    ReplacementList,
    SimpleCallSetting,
    SmsSetting,
    TwilioAccount,
    User,
    UserMessageTemplate,
    XmonSettings,
)
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
from .users import phone_audit, rules
from .users.forms import UserForm
from .xmon_settings.forms import XmonSettingsForm

LABEL = "設定の取り込み"
# The setting sections: (document key, form, approval kind).
SETTING_SECTIONS: tuple[tuple[str, type[RecipientSettingForm], ConfigKind], ...] = (
    ("simple_call_settings", SimpleCallForm, SIMPLE_CALL_KIND),
    ("sms_settings", SmsSettingForm, SMS_KIND),
    ("button_call_settings", ButtonCallForm, BUTTON_CALL_KIND),
)
SETTING_MODELS = {"simple_call_settings": SimpleCallSetting, "sms_settings": SmsSetting, "button_call_settings": ButtonCallSetting}
SCOPES = {REPLACEMENT_SIMPLE: "通話設定(シンプル通話)", REPLACEMENT_BUTTON: "通話設定(ボタン操作付き)"}


def configured() -> list[str]:
    """What configuration the instance has that an import must not meet, e.g. 「Twilio アカウント情報 2 件」."""
    found = []
    models: list[tuple[type, str]] = [(TwilioAccount, "Twilio アカウント情報")]
    models += [(SETTING_MODELS[key], kind.label) for key, _form, kind in SETTING_SECTIONS]
    models.append((UserMessageTemplate, "メッセージテンプレート"))
    for model, label in models:
        count = db.session.scalar(select(func.count()).select_from(model)) or 0
        if count:
            found.append(f"{label} {count} 件")
    lists = db.session.scalars(select(ReplacementList).where(ReplacementList.content != ""))
    found += [f"再生メッセージ置き換え設定({SCOPES.get(row.scope, row.scope)})" for row in lists]
    return found


def pending() -> PendingChange | None:
    """The import waiting for approval, if there is one."""
    return next(iter(approval.pending_for(KIND)), None)


def request(document: dict[str, Any], by: User, name: str) -> PendingChange:
    """Check a document read by config_export.read() and record it for approval (the caller commits).

    Raise Refused with every problem found when it cannot be imported; nothing is recorded then.
    """
    found = configured()
    if found:
        raise Refused(
            [f"this instance already has configuration ({', '.join(found)}): an import only goes into an instance "
             "without Twilio accounts, settings, message templates or replacement lists."]
        )
    waiting = pending()
    if waiting is not None:
        raise Refused(
            [f"an import ({waiting.target_name}) already waits for approval in 承認待ち: approve or reject it first."]
        )
    with current_app.test_request_context(method="POST"):
        values = _checked(document)
    values["name"] = name[:128]
    return approval.request_change(KIND, ACTION_CREATE, by, values)


def _checked(document: dict[str, Any]) -> dict[str, Any]:
    """The document's values as the forms accept and normalise them; Refused lists every problem."""
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
    }
    return values, saved.ack_http_token_encrypted


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


def after_approval(values: dict[str, Any]) -> list[str]:
    """What an administrator still has to do once the import is applied (for the command line)."""
    existing = set(db.session.scalars(select(User.login)))
    lines = []
    new = [r["login"] for r in values["users"] if r["login"] not in existing and not r["login_disabled"]]
    if new:
        lines.append(
            f"Users created without a password ({', '.join(new)}) cannot log in until an administrator sets one "
            "in ユーザ管理 → 編集."
        )
    missing = [r["name"] for r in values["twilio_accounts"] if r["name"] not in values["auth_tokens"]]
    if missing:
        lines.append(
            f"Twilio accounts without an AUTH TOKEN ({', '.join(missing)}): enter it in Twilio アカウント情報 → 編集; "
            "calls and SMS through them fail until then."
        )
    return lines


def _check(action: str, obj: Any, values: dict[str, Any]) -> str | None:
    """At approval: refuse when configuration appeared meanwhile or a named user lost their number."""
    found = configured()
    if found:
        return f"この xmonbridge には既に設定があるため({'、'.join(found)})、{LABEL}を適用できません。却下してください。"
    names = {record["name"] for record in values["twilio_accounts"]}
    phones = {record["login"]: record["phone"] for record in values["users"]}
    phones.update({user.login: user.phone for user in db.session.scalars(select(User))})
    for key, _form, kind in SETTING_SECTIONS:
        for record in values[key]:
            if record["account"] not in names:
                return f"{kind.label}「{record['name']}」の Twilio アカウント情報「{record['account']}」がありません。"
            for login in record["recipients"]:
                if not phones.get(login):
                    return f"{kind.label}「{record['name']}」の宛先のユーザ「{login}」に電話番号が設定されていないため、適用できません。"
    for record in values["message_templates"]:
        if record["user"] not in phones:
            return f"メッセージテンプレートのユーザ「{record['user']}」がいないため、適用できません。"
    return None


def _apply(values: dict[str, Any], approver: User) -> None:
    """Write everything (the approval's transaction commits it, or rolls it all back)."""
    users = {user.login: user for user in db.session.scalars(select(User))}
    for record in values["users"]:
        if record["login"] in users:
            continue  # matched by login: an existing user stays exactly as they are
        user = User(**record)
        db.session.add(user)
        phone_audit.record(user, None, approver)
        users[user.login] = user
    accounts = {}
    for record in values["twilio_accounts"]:
        account = TwilioAccount(auth_token_encrypted=values["auth_tokens"].get(record["name"], ""), **record)
        db.session.add(account)
        accounts[account.name] = account
    _apply_xmon(values["xmon_settings"], values.get("ack_http_token"))
    db.session.flush()
    for key, _form, kind in SETTING_SECTIONS:
        for record in values[key]:
            setting = SETTING_MODELS[key]()
            fields = {name: value for name, value in record.items() if name != "account"}
            fields["account_id"] = accounts[record["account"]].id
            fields["recipients"] = [users[login].id for login in record["recipients"]]
            kind.write(setting, fields)
            db.session.add(setting)
    for record in values["message_templates"]:
        db.session.add(
            UserMessageTemplate(
                user_id=users[record["user"]].id,
                opening_message=record["opening_message"],
                closing_message=record["closing_message"],
            )
        )
    for scope, content in values["replacement_lists"].items():
        if content:
            replacement_lists.for_edit(scope).content = content


def _apply_xmon(record: dict[str, Any], token: str | None) -> None:
    settings = XmonSettings.for_update()
    for name, value in record.items():
        # As the form: what the file leaves blank keeps the current value.
        if value is not None:
            setattr(settings, name, value)
    if token:
        settings.ack_http_token_encrypted = token


def _lines(show: Callable[[dict[str, Any]], str]) -> Callable[[Any], str]:
    """A diff text of one line per record."""
    return lambda records: "\n".join(show(record) for record in records or []) or "(なし)"


def _user_line(record: dict[str, Any]) -> str:
    existing = db.session.scalar(select(User).where(User.login == record["login"]))
    roles = [label for flag, label in (("is_admin", "管理者"), ("is_approver", "承認権限")) if record[flag]]
    if record["login_disabled"]:
        roles.append("ログインを許可しない")
    text = f"{record['login']}({record['name'] or '表示名なし'}) {phone.display(record['phone'])}".rstrip()
    text += f" [{'・'.join(roles)}]" if roles else ""
    return text + (" …既存のユーザ(変更しません)" if existing is not None else " …新規(パスワードなし)")


def _account_line(record: dict[str, Any]) -> str:
    bin_url = "TwiML Bin URL あり" if record["twiml_bin_url"] else "TwiML Bin URL なし"
    return f"{record['name']}: {record['account_sid']}、{bin_url}、CPS {record['cps']}"


def _xmon_text(record: dict[str, Any]) -> str:
    lines = [
        f"X-MON URL: {record['xmon_url'] or '(現在の設定のまま)'}",
        f"読み上げ音声: {VOICE_LABELS.get(record['voice'], record['voice'])}",
        f"認知済みの通知先: {ACK_MODES.get(record['ack_mode'], record['ack_mode'])}",
    ]
    if record["ack_command_file"]:
        lines.append(f"外部コマンドファイル: {record['ack_command_file']}")
    if record["ack_http_url"]:
        lines.append(f"通知先 URL: {record['ack_http_url']}")
    lines.append(f"同じ番号への発信の上限: 15 分あたり {record['calls_per_15min']} 件、1 時間あたり {record['calls_per_hour']} 件")
    return "\n".join(lines)


def _setting_line(templates: dict[str, Any]) -> Callable[[dict[str, Any]], str]:
    """A setting in one line: (mode) name, account, From, recipients (, message)."""
    labels = dict(template_choices(templates)) if templates else {}

    def line(record: dict[str, Any]) -> str:
        mode = f"{MODES.get(record['mode'], record['mode'])} " if "mode" in record else ""
        key = record.get("message_template")
        message = f"、{labels.get(key, key)}" if key else ""
        recipients = "・".join(record["recipients"])
        sender = phone.display(record["from_number"]) if record["from_number"].startswith("+") else record["from_number"]
        return f"{mode}{record['name']}: {record['account']}、From {sender}、宛先 {recipients}{message}"

    return line


def _template_line(record: dict[str, Any]) -> str:
    return f"{record['user']}: 着信直後 {len(record['opening_message'])} 文字、通話終了時 {len(record['closing_message'])} 文字"


def _replacements_text(record: dict[str, str]) -> str:
    lines = [f"{SCOPES[scope]}: {len(content.splitlines())} 行" for scope, content in (record or {}).items() if content]
    return "\n".join(lines) or "(なし)"


KIND = approval.register(
    ConfigKind(
        key="config_import",
        label=LABEL,
        # Never read: an import is only ever a 作成, applied by create, and names no object.
        model=PendingChange,
        fields=(
            Field("users", "ユーザ", show=_lines(_user_line)),
            Field("twilio_accounts", "Twilio アカウント情報", show=_lines(_account_line)),
            Field("auth_tokens", "AUTH TOKEN", secret=True),
            Field("xmon_settings", "X-MON 設定", show=_xmon_text),
            Field("ack_http_token", "通知先のトークン", secret=True),
            Field("simple_call_settings", SIMPLE_CALL_KIND.label, show=_lines(_setting_line(CALL_TEMPLATES))),
            Field("sms_settings", SMS_KIND.label, show=_lines(_setting_line(SMS_TEMPLATES))),
            Field("button_call_settings", BUTTON_CALL_KIND.label, show=_lines(_setting_line({}))),
            Field("message_templates", "メッセージテンプレート", show=_lines(_template_line)),
            Field("replacement_lists", "再生メッセージ置き換え設定", show=_replacements_text),
        ),
        detail_endpoint="approvals.index",
        check=_check,
        create=_apply,
    )
)
