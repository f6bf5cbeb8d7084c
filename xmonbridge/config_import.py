"""設定の取り込み: a configuration export (config_export.py) applied through approval (B6).

`request()` checks a document with the rules of the screens' own forms (config_validation.py)
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

Settings refer to accounts by name and to recipients by login; they are resolved to ids only
when the import is applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from . import approval, config_validation, phone, replacement_lists
from .approval import ConfigKind, Field
from .button_calls.kind import BUTTON_CALL_KIND
from .config_export import XMON_REFERENCES, Refused
from .config_validation import SCOPES, SETTING_SECTIONS
from .extensions import db
from .messages import CALL_TEMPLATES, SMS_TEMPLATES, template_choices
from .models import (
    ACK_MODES,
    ACTION_CREATE,
    MODES,
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
from .notify_settings.kind import SIMPLE_CALL_KIND, SMS_KIND
from .users import phone_audit

LABEL = "設定の取り込み"
SETTING_MODELS = {"simple_call_settings": SimpleCallSetting, "sms_settings": SmsSetting, "button_call_settings": ButtonCallSetting}


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
        values = config_validation.checked(document)
    values["name"] = name[:128]
    return approval.request_change(KIND, ACTION_CREATE, by, values)


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
    _apply_heartbeat(values["xmon_settings"], users)
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
        if value is not None and name not in XMON_REFERENCES:
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


def _apply_heartbeat(record: dict[str, Any], users: dict[str, User]) -> None:
    """ハートビート通知's user and SMS setting, by login and name, once the settings exist."""
    db.session.flush()
    settings = XmonSettings.for_update()
    login, name = record["heartbeat_user"], record["heartbeat_sms_setting"]
    settings.heartbeat_user_id = users[login].id if login is not None else None
    sms = db.session.scalar(select(SmsSetting).where(SmsSetting.name == name)) if name is not None else None
    settings.heartbeat_sms_setting_id = sms.id if sms is not None else None


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
    lines.append(f"ログ・インシデントの保存期間: {record['retention_days']} 日")
    if record["heartbeat_user"] is not None:
        lines.append(
            f"ハートビート通知: {record['heartbeat_user']} へ SMS 通知設定「{record['heartbeat_sms_setting'] or '(なし)'}」で"
            f"(配信処理 {record['heartbeat_dispatcher_minutes']} 分、Twilio {record['heartbeat_twilio_minutes']} 分)"
        )
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
