"""`xmonbridge export` and `xmonbridge import`: the configuration moved to a fresh instance.

The import waits in 承認待ち as one 「設定の取り込み」 until an approver approves it; afterwards
the new instance exports the same configuration. A file that was changed, is not an export,
or holds a value the forms would refuse is turned away with a message, and nothing changes.
"""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.factories import (
    AUTH_TOKEN,
    PASSWORD,
    make_button_call_setting,
    make_recipient,
    make_simple_call_setting,
    make_sms_setting,
    make_twilio_account,
    make_user,
)
from tests.instance_cli import Instance, initialised
from xmonbridge import secretbox
from xmonbridge.config_export import digest_of, dumps
from xmonbridge.extensions import db
from xmonbridge.models import (
    REPLACEMENT_BUTTON,
    REPLACEMENT_SIMPLE,
    ReplacementList,
    TwilioAccount,
    UserMessageTemplate,
    XmonSettings,
)

SMS_ACCOUNT_SID = "AC" + "89abcdef01234567" * 2
SMS_AUTH_TOKEN = "00112233445566778899aabbccddeeff"
ACK_TOKEN = "ack-secret-token-1"


def _seed(instance: Instance) -> None:
    """A configuration touching every section of the export."""
    with instance.app():
        make_user(login="admin", is_admin=True, is_approver=True)
        sato = make_recipient("sato", "佐藤 翔太", "+819001230001")
        suzuki = make_user(login="suzuki", name="鈴木 花子", phone="+819001230002", email="suzuki@example.com")
        calls = make_twilio_account(name="運用チームアカウント", cps=5)
        texts = make_twilio_account(name="SMS 専用", account_sid=SMS_ACCOUNT_SID, auth_token=SMS_AUTH_TOKEN, twiml_bin_url=None)
        settings = XmonSettings.for_update()
        settings.xmon_url = "https://xmon.example.com"
        settings.voice = "Polly.Takumi"
        settings.ack_mode = "http"
        settings.ack_http_url = "https://nagios.example.com/ack"
        settings.ack_http_token_encrypted = secretbox.encrypt(ACK_TOKEN)
        settings.calls_per_15min, settings.calls_per_hour = 4, 12
        make_simple_call_setting(
            calls, [sato, suzuki], name="電話連絡", message_template="custom", custom_message="サーバ室で障害です", ring_seconds=45
        )
        sms = make_sms_setting(texts, [suzuki], name="SMS連絡", from_number="XMON", message_template="state")
        settings.retention_days = 90
        db.session.flush()
        settings.heartbeat_user_id, settings.heartbeat_sms_setting_id = suzuki.id, sms.id
        settings.heartbeat_dispatcher_minutes, settings.heartbeat_twilio_minutes = 5, 45
        make_button_call_setting(
            calls, [suzuki, sato], name="輪番連絡", mode="rotation", recall_seconds=120, max_calls=3, machine_detection=True
        )
        db.session.add(UserMessageTemplate(user_id=sato.id, opening_message="佐藤さん、おはようございます。", closing_message="以上です。"))
        db.session.add(ReplacementList(scope=REPLACEMENT_SIMPLE, name="シンプル", content="TRAFFIC,トラフィック"))
        db.session.add(ReplacementList(scope=REPLACEMENT_BUTTON, name="ボタン", content="DB,データベース\nWEB,ウェブ"))
        db.session.commit()


def _fresh(folder: Path, migrated_db: Path) -> Instance:
    """A new instance with only its administrator, made as the README says (init, create-user)."""
    instance = initialised(folder, migrated_db)
    instance.ok("create-user", "admin", "--admin", "--approver", "--password", PASSWORD, here=True)
    return instance


def _configuration(text: str) -> dict[str, Any]:
    """A document without what differs between two exports of the same configuration."""
    document = json.loads(text)
    return {key: value for key, value in document.items() if key not in ("exported_at", "digest")}


def _dump(instance: Instance) -> list[str]:
    """Every row of the instance's database, to show that a refusal changed nothing."""
    with closing(sqlite3.connect(instance.database)) as connection:
        return list(connection.iterdump())


def _approve_import(instance: Instance) -> str:
    """Log in as the approver, find the pending 設定の取り込み in 承認待ち and approve it; return the page."""
    with instance.app() as app:
        client = app.test_client()
        assert client.post("/login", data={"login": "admin", "password": PASSWORD}).status_code == 302
        page = client.get("/admin/twilio/approvals/").get_data(as_text=True)
        [change_id] = re.findall(r'id="change-(\d+)"', page)
        approved = client.post(f"/admin/twilio/approvals/{change_id}/approve", follow_redirects=True).get_data(as_text=True)
    assert "の作成を承認しました。" in approved, approved
    return page


def test_export_import_approve_gives_the_same_configuration(tmp_path: Path, migrated_db: Path) -> None:
    source = initialised(tmp_path / "source", migrated_db)
    _seed(source)
    exported = tmp_path / "config.json"
    out = source.ok("export", "--with-secrets", str(exported))
    assert "wrote" in out and "3 users, 2 Twilio accounts" in out
    assert exported.stat().st_mode & 0o777 == 0o600
    text = exported.read_text()
    assert AUTH_TOKEN in text and SMS_AUTH_TOKEN in text and ACK_TOKEN in text
    # Passwords never leave: not even their hashes.
    assert "password" not in text and "scrypt" not in text and "pbkdf2" not in text

    target = _fresh(tmp_path / "target", migrated_db)
    before = _configuration(target.ok("export", "-", here=True))
    out = target.ok("import", str(exported), "--by", "admin")
    assert "recorded 設定の取り込み「config.json」" in out
    assert "Users created without a password (suzuki) cannot log in until an administrator sets one in ユーザ管理 → 編集." in out
    # Nothing applies before approval.
    assert _configuration(target.ok("export", "-", here=True)) == before

    page = _approve_import(target)
    assert "設定の取り込み「config.json」の作成" in page
    for shown in ("suzuki(鈴木 花子) +81-90-0123-0002 …新規(パスワードなし)", "admin(表示名なし) [管理者・承認権限] …既存のユーザ(変更しません)",
                  "運用チームアカウント: " + "AC" + "0123456789abcdef" * 2, "輪番通知 輪番連絡: 運用チームアカウント、From +81-50-1234-0001、宛先 suzuki・sato",
                  "X-MON URL: https://xmon.example.com", "通話設定(ボタン操作付き): 2 行",
                  "ログ・インシデントの保存期間: 90 日", "ハートビート通知: suzuki へ SMS 通知設定「SMS連絡」で(配信処理 5 分、Twilio 45 分)"):
        assert shown in page, shown
    # Secrets show only as 設定あり, as in every diff.
    assert AUTH_TOKEN not in page and ACK_TOKEN not in page and "設定あり" in page

    assert _configuration(target.ok("export", "--with-secrets", "-", here=True)) == _configuration(text)
    with target.app() as app:
        client = app.test_client()
        # An imported user has no password: no login until an administrator sets one.
        refused = client.post("/login", data={"login": "suzuki", "password": PASSWORD}, follow_redirects=True)
        assert "ログイン名またはパスワードが正しくありません" in refused.get_data(as_text=True)
        client.post("/login", data={"login": "admin", "password": PASSWORD})
        page = client.get("/admin/twilio/simple-calls/").get_data(as_text=True)
        assert "電話連絡" in page


def test_an_export_without_secrets_leaves_tokens_out_and_the_accounts_wait_for_them(tmp_path: Path, migrated_db: Path) -> None:
    source = initialised(tmp_path / "source", migrated_db)
    _seed(source)
    text = source.ok("export", "-")
    assert AUTH_TOKEN not in text and SMS_AUTH_TOKEN not in text and ACK_TOKEN not in text
    assert '"auth_token"' not in text and '"ack_http_token"' not in text
    assert json.loads(text)["with_secrets"] is False

    target = _fresh(tmp_path / "target", migrated_db)
    out = target.ok("import", "-", "--by", "admin", stdin=text)
    assert "recorded 設定の取り込み「標準入力」" in out
    assert "Twilio accounts without an AUTH TOKEN (SMS 専用, 運用チームアカウント): enter it in Twilio アカウント情報 → 編集" in out
    _approve_import(target)
    assert _configuration(target.ok("export", "-", here=True)) == _configuration(text)
    # Entering the token later (Twilio アカウント情報 → 編集と承認) makes the account whole again.
    with target.app() as app:
        client = app.test_client()
        client.post("/login", data={"login": "admin", "password": PASSWORD})
        account_id = db.session.scalar(select(TwilioAccount.id).where(TwilioAccount.name == "SMS 専用"))
        edited = client.post(
            f"/admin/twilio/accounts/{account_id}/edit",
            data={"name": "SMS 専用", "account_sid": SMS_ACCOUNT_SID, "auth_token": SMS_AUTH_TOKEN, "cps": "1",
                  "twiml_bin_url": "", "previous_token_hours": "0", "submit_approve": "編集と承認"},
            follow_redirects=True,
        )
        assert "編集し、承認しました" in edited.get_data(as_text=True)
    exported = json.loads(target.ok("export", "--with-secrets", "-", here=True))
    tokens = {a["name"]: a.get("auth_token") for a in exported["twilio_accounts"]}
    assert tokens == {"SMS 専用": SMS_AUTH_TOKEN, "運用チームアカウント": None}


def _resigned(document: dict[str, Any]) -> str:
    """A document edited on purpose, with its digest made to match again."""
    return dumps({**document, "digest": digest_of(document)})


def _edited(text: str, edit: Any) -> str:
    document = json.loads(text)
    edit(document)
    return _resigned(document)


def test_import_refuses_a_file_it_does_not_understand_and_changes_nothing(tmp_path: Path, migrated_db: Path) -> None:
    source = initialised(tmp_path / "source", migrated_db)
    _seed(source)
    text = source.ok("export", "-", here=True)
    target = _fresh(tmp_path / "target", migrated_db)
    before = _dump(target)

    def set_in(section: str, index: int, key: str, value: Any) -> Any:
        return lambda document: document[section][index].__setitem__(key, value)

    cases = {
        "tampered": (text.replace("佐藤 翔太", "佐藤 太郎"), "it was changed after it was exported (its digest does not match"),
        "digest removed": (re.sub(r',\s*"digest": "[^"]*"', "", text), "it was changed after it was exported"),
        "foreign JSON": (json.dumps({"users": [], "settings": {}}), 'it is not an xmonbridge configuration export (no "format": "xmonbridge-config")'),
        "not JSON": ("login,phone\nsato,+819001230001\n", "it is not JSON (line 1, column 1"),
        "newer version": (_edited(text, lambda d: d.__setitem__("version", 2)), "it is configuration format version 2; this xmonbridge reads version 1"),
        "unknown key": (_edited(text, lambda d: d["users"][0].__setitem__("password", "x")), "users[0]: unknown key 'password'"),
        "wrong type": (_edited(text, set_in("simple_call_settings", 0, "ring_seconds", "45")), "simple_call_settings[0].ring_seconds: a whole number expected"),
        "invalid phone": (
            _edited(text, set_in("users", 1, "phone", "090-0123-0001")),
            "ユーザ「sato」: 連絡先電話番号(Twilio API連携): 電話番号は国番号から入力してください",
        ),
        "invalid ring time": (
            _edited(text, set_in("simple_call_settings", 0, "ring_seconds", 1000)),
            "通話設定(シンプル通話)「電話連絡」: 呼び出しを行い続ける秒数: 呼び出しを行い続ける秒数は 5 から 600 までの整数で入力してください。",
        ),
        "invalid sender": (
            _edited(text, set_in("sms_settings", 0, "from_number", "TOO LONG SENDER")),
            "SMS 通知設定「SMS連絡」: 英数字の送信者 ID: 英数字の送信者 ID は半角英数字と空白で 11 文字以内",
        ),
        "unknown recipient": (
            _edited(text, set_in("button_call_settings", 0, "recipients", ["suzuki", "nobody"])),
            "通話設定(ボタン操作付き)「輪番連絡」: 宛先のユーザ「nobody」がファイルにもこの xmonbridge にもありません。",
        ),
        "approver without admin": (
            _edited(text, set_in("users", 2, "is_approver", True)),
            "ユーザ「suzuki」: 承認権限: 承認権限は管理者にのみ付与できます。",
        ),
        "retention too short": (
            _edited(text, lambda d: d["xmon_settings"].__setitem__("retention_days", 1)),
            "X-MON 設定: ログ・インシデントの保存期間(日)",
        ),
        "heartbeat to nobody": (
            _edited(text, lambda d: d["xmon_settings"].__setitem__("heartbeat_user", "nobody")),
            "ハートビート通知: 通知先ユーザ「nobody」が連絡先電話番号のあるユーザとしてファイルにもこの xmonbridge にもありません。",
        ),
        "heartbeat through an unknown SMS setting": (
            _edited(text, lambda d: d["xmon_settings"].__setitem__("heartbeat_sms_setting", "他の設定")),
            "ハートビート通知: 送信に使う SMS 通知設定「他の設定」がファイルにありません。",
        ),
        "heartbeat minutes": (
            _edited(text, lambda d: d["xmon_settings"].__setitem__("heartbeat_twilio_minutes", 0)),
            "ハートビート通知: Twilio が要求を拒否し続けてから通知するまでの時間(分)は 1〜1440 分で入力してください。",
        ),
        "bad replacement line": (
            _edited(text, lambda d: d["replacement_lists"].__setitem__("simple", "TRAFFIC")),
            "再生メッセージ置き換え設定(通話設定(シンプル通話)): 再生メッセージ置き換え設定: 1行目",
        ),
    }
    for case, (content, message) in cases.items():
        path = tmp_path / f"{case}.json"
        path.write_text(content)
        refused = target.invoke("import", str(path), "--by", "admin")
        assert refused.exit_code == 1, (case, refused.stdout)
        assert f"{path.name} cannot be imported; nothing was changed" in refused.stderr, (case, refused.stderr)
        assert message in refused.stderr, (case, refused.stderr)
        assert _dump(target) == before, case
    # Every problem of a file is listed at once.
    both = _edited(text, lambda d: (d["users"][1].__setitem__("phone", "12"), d["twilio_accounts"][0].__setitem__("cps", 0)))
    refused = target.invoke("import", "-", "--by", "admin", stdin=both)
    assert "ユーザ「sato」: 連絡先電話番号" in refused.stderr and "Twilio アカウント情報「SMS 専用」: 1 秒あたりの発信・送信数(CPS)" in refused.stderr


def test_import_goes_only_into_an_instance_without_configuration(tmp_path: Path, migrated_db: Path) -> None:
    source = initialised(tmp_path / "source", migrated_db)
    _seed(source)
    text = source.ok("export", "-", here=True)
    target = _fresh(tmp_path / "target", migrated_db)
    with target.app():
        make_twilio_account(name="既存のアカウント")
    refused = target.invoke("import", "-", "--by", "admin", stdin=text)
    assert refused.exit_code == 1
    assert "this instance already has configuration (Twilio アカウント情報 1 件)" in refused.stderr

    # Configuration that appears while the import waits for approval stops it at approval.
    other = _fresh(tmp_path / "other", migrated_db)
    other.ok("import", "-", "--by", "admin", stdin=text, here=True)
    again = other.invoke("import", "-", "--by", "admin", stdin=text)
    assert again.exit_code == 1 and "an import (標準入力) already waits for approval in 承認待ち" in again.stderr
    with other.app() as app:
        make_twilio_account(name="後から作ったアカウント")
        client = app.test_client()
        client.post("/login", data={"login": "admin", "password": PASSWORD})
        page = client.get("/admin/twilio/approvals/").get_data(as_text=True)
        [change_id] = re.findall(r'id="change-(\d+)"', page)
        answer = client.post(f"/admin/twilio/approvals/{change_id}/approve", follow_redirects=True).get_data(as_text=True)
        assert "この xmonbridge には既に設定があるため(Twilio アカウント情報 1 件)、設定の取り込みを適用できません。" in answer
    assert [a["name"] for a in json.loads(other.ok("export", "-", here=True))["twilio_accounts"]] == ["後から作ったアカウント"]


@pytest.mark.parametrize("login", ["nobody", "sato"])
def test_import_names_an_administrator_as_the_requester(tmp_path: Path, migrated_db: Path, login: str) -> None:
    target = _fresh(tmp_path / "target", migrated_db)
    with target.app():
        make_recipient("sato")
    refused = target.invoke("import", "-", "--by", login, stdin="{}")
    assert refused.exit_code == 1
    assert f"--by {login}: name an administrator who may log in" in refused.stderr


def test_export_never_overwrites_a_file(tmp_path: Path, migrated_db: Path) -> None:
    instance = _fresh(tmp_path / "instance", migrated_db)
    existing = tmp_path / "config.json"
    existing.write_text("keep me\n")
    refused = instance.invoke("export", str(existing))
    assert refused.exit_code == 1 and "exists: an export never overwrites a file" in refused.stderr
    assert existing.read_text() == "keep me\n"
