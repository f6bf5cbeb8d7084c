"""ユーザ管理 (R2): list, create, show, edit, delete."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from xmonbridge.extensions import db
from xmonbridge.models import User
from tests.conftest import AuthActions
from tests.factories import make_recipient, make_sms_setting, make_twilio_account, make_user

VALID = {
    "login": "sato",
    "name": "佐藤 翔太",
    "password": "",
    "login_disabled": "y",
    "phone": "+81-90-0123-0001",
    "email": "sato@example.com",
    "mobile_email": "",
}


def _count() -> int:
    return db.session.scalar(select(func.count()).select_from(User)) or 0


def _user(login: str) -> User | None:
    db.session.expire_all()
    return db.session.scalar(select(User).where(User.login == login))


@pytest.mark.parametrize("typed", ["+81-90-0123-0001", "+819001230001", "+81 90 0123 0001"])
def test_it_stores_e164_and_shows_hyphens(client: FlaskClient, logged_in: AuthActions, typed: str) -> None:
    response = client.post("/admin/users/new", data={**VALID, "phone": typed})
    assert response.status_code == 302
    user = _user("sato")
    assert user is not None and user.phone == "+819001230001"
    assert user.login_disabled and user.password_hash is None
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert '<dd class="col-sm-8" id="user-phone">+81-90-0123-0001</dd>' in page
    assert "+81-90-0123-0001" in client.get("/admin/users/").get_data(as_text=True)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("phone", "090-0123-0001", "電話番号は国番号から入力してください"),
        ("phone", "+81-90", "電話番号の形式が正しくありません"),
        ("phone", "+81-abc", "電話番号の形式が正しくありません"),
        ("login", "", "このフィールドは必須です。"),
        ("login", "sa to", "ログイン名は半角英数字と _ . @ - で入力してください。"),
        ("login", "admin", "このログイン名は既に使われています。"),
        ("email", "not-an-address", "E-MAILアドレスの形式が正しくありません。"),
        ("mobile_email", "x@", "E-MAILアドレスの形式が正しくありません。"),
        ("password", "short", "パスワードは8文字以上128文字以内で入力してください。"),
    ],
)
def test_it_refuses_bad_input_and_saves_nothing(
    client: FlaskClient, logged_in: AuthActions, field: str, value: str, message: str
) -> None:
    before = _count()
    page = client.post("/admin/users/new", data={**VALID, field: value}).get_data(as_text=True)
    assert message in page
    assert f'id="{field}-error"' in page
    assert _count() == before


def test_a_user_who_may_log_in_needs_a_password(client: FlaskClient, logged_in: AuthActions) -> None:
    data = {k: v for k, v in VALID.items() if k != "login_disabled"}
    page = client.post("/admin/users/new", data=data).get_data(as_text=True)
    assert "ログインを許可するユーザにはパスワードを入力してください。" in page
    assert _user("sato") is None


def test_a_new_user_can_log_in_with_the_password(client: FlaskClient, logged_in: AuthActions) -> None:
    data = {k: v for k, v in VALID.items() if k != "login_disabled"}
    client.post("/admin/users/new", data={**data, "password": "sato-pass-1", "is_admin": "y"})
    logged_in.logout()
    assert logged_in.login("sato", "sato-pass-1").headers["Location"] == "/admin/twilio/accounts/"


def test_edit_keeps_the_password_when_blank(client: FlaskClient, logged_in: AuthActions) -> None:
    user = make_user(login="tanaka", phone="+819001230002")
    old_hash = user.password_hash
    data: dict[str, Any] = {"login": "tanaka", "name": "田中", "password": "", "phone": "+81-3-1234-0001"}
    response = client.post(f"/admin/users/{user.id}/edit", data=data)
    assert response.status_code == 302
    edited = _user("tanaka")
    assert edited is not None and edited.password_hash == old_hash
    assert edited.phone == "+81312340001" and edited.name == "田中"
    page = client.get(f"/admin/users/{user.id}/edit").get_data(as_text=True)
    assert 'value="+81312340001"' in page or 'value="+81-3-1234-0001"' in page
    assert "編集" in page


def test_edit_refuses_bad_input_and_changes_nothing(client: FlaskClient, logged_in: AuthActions) -> None:
    user = make_user(login="tanaka", phone="+819001230002")
    page = client.post(f"/admin/users/{user.id}/edit", data={"login": "tanaka", "phone": "03-1234-0001"})
    assert "電話番号は国番号から入力してください" in page.get_data(as_text=True)
    assert _user("tanaka").phone == "+819001230002"  # type: ignore[union-attr]


def test_it_deletes_a_user(client: FlaskClient, logged_in: AuthActions) -> None:
    user = make_user(login="tanaka")
    response = client.post(f"/admin/users/{user.id}/delete")
    assert response.headers["Location"] == "/admin/users/"
    assert _user("tanaka") is None


def test_nobody_deletes_themself(client: FlaskClient, logged_in: AuthActions, admin: User) -> None:
    client.post(f"/admin/users/{admin.id}/delete")
    page = client.get(f"/admin/users/{admin.id}").get_data(as_text=True)
    assert "自分自身を削除することはできません。" in page
    assert _user("admin") is not None


def test_the_last_administrator_stays(client: FlaskClient, logged_in: AuthActions, admin: User) -> None:
    other = make_user(login="other", is_admin=True)
    # Two admins: one may go. Then the remaining one may not be demoted.
    assert client.post(f"/admin/users/{other.id}/delete").headers["Location"] == "/admin/users/"
    page = client.post(
        f"/admin/users/{admin.id}/edit", data={"login": "admin", "is_approver": "y"}
    ).get_data(as_text=True)
    assert "最後の管理者を削除・無効化することはできません。" in page
    assert _user("admin").is_admin  # type: ignore[union-attr]


def test_every_field_has_a_label(client: FlaskClient, logged_in: AuthActions) -> None:
    page = client.get("/admin/users/new").get_data(as_text=True)
    for field_id, label in [
        ("login", "ログイン名"),
        ("password", "パスワード(X-MON ローカル認証)"),
        ("login_disabled", "ログインを許可しない"),
        ("phone", "連絡先電話番号(Twilio API連携)"),
        ("email", "E-MAILアドレス"),
        ("mobile_email", "携帯モバイル用E-MAILアドレス"),
        ("is_admin", "管理者"),
        ("is_approver", "承認権限"),
    ]:
        assert f'for="{field_id}">{label}</label>' in page


@pytest.fixture
def non_approver(client: FlaskClient, auth: AuthActions) -> User:
    """An administrator without 承認権限, logged in, beside an approving administrator."""
    make_user(login="admin", is_admin=True, is_approver=True)
    user = make_user(login="bob", is_admin=True)
    auth.login("bob")
    return user


def test_a_non_approver_cannot_grant_approval_rights(client: FlaskClient, non_approver: User) -> None:
    page = client.get(f"/admin/users/{non_approver.id}/edit").get_data(as_text=True)
    assert 'disabled id="is_approver"' in page or re.search(r'<input[^>]*disabled[^>]*id="is_approver"', page)
    page = client.post(
        f"/admin/users/{non_approver.id}/edit", data={"login": "bob", "is_admin": "y", "is_approver": "y"}
    ).get_data(as_text=True)
    assert "承認権限の付与・取り消しは、承認権限を持つユーザのみが行えます。" in page
    assert not _user("bob").is_approver  # type: ignore[union-attr]
    client.post("/admin/users/new", data={**VALID, "login": "eve", "is_admin": "y", "is_approver": "y"})
    assert _user("eve") is None


def test_a_non_approver_cannot_take_over_an_approver(client: FlaskClient, non_approver: User) -> None:
    approver = _user("admin")
    assert approver is not None
    old_hash = approver.password_hash
    page = client.post(
        f"/admin/users/{approver.id}/edit",
        data={"login": "admin", "password": "taken-over-1", "is_admin": "y"},
    ).get_data(as_text=True)
    assert "承認権限を持つユーザの編集・削除は、承認権限を持つユーザのみが行えます。" in page
    assert _user("admin").password_hash == old_hash  # type: ignore[union-attr]
    client.post(f"/admin/users/{approver.id}/delete")
    assert _user("admin") is not None


def test_approval_rights_need_the_administrator_role(client: FlaskClient, logged_in: AuthActions) -> None:
    page = client.post("/admin/users/new", data={**VALID, "is_approver": "y"}).get_data(as_text=True)
    assert "承認権限は管理者にのみ付与できます。" in page
    assert _user("sato") is None


def test_the_last_approver_keeps_the_right(client: FlaskClient, logged_in: AuthActions, admin: User) -> None:
    make_user(login="other", is_admin=True)
    page = client.post(f"/admin/users/{admin.id}/edit", data={"login": "admin", "is_admin": "y"}).get_data(
        as_text=True
    )
    assert "承認権限を持つ最後のユーザの承認権限を外す・無効化・削除することはできません。" in page
    assert _user("admin").is_approver  # type: ignore[union-attr]


def test_a_non_approver_cannot_delete_one_of_two_approvers(client: FlaskClient, non_approver: User) -> None:
    # Two approvers: the last-approver rule cannot be what refuses the deletion.
    second = make_user(login="carol", is_admin=True, is_approver=True)
    page = client.post(f"/admin/users/{second.id}/delete", follow_redirects=True).get_data(as_text=True)
    assert "承認権限を持つユーザの編集・削除は、承認権限を持つユーザのみが行えます。" in page
    assert _user("carol") is not None


def _recipient_of_an_approved_setting() -> User:
    recipient = make_recipient()
    make_sms_setting(make_twilio_account(), [recipient], name="夜間連絡")
    return recipient


def _edit_phone(client: FlaskClient, user: User, phone: str) -> str:
    data = {**VALID, "phone": phone}
    return client.post(f"/admin/users/{user.id}/edit", data=data, follow_redirects=True).get_data(as_text=True)


def test_only_approvers_change_the_number_of_a_recipient(client: FlaskClient, non_approver: User) -> None:
    recipient = _recipient_of_an_approved_setting()
    page = _edit_phone(client, recipient, "+81-90-9999-0002")
    assert "次の承認済みの設定の宛先になっているため、電話番号の変更は承認権限を持つユーザのみが行えます: SMS 通知設定「夜間連絡」" in page
    assert _user("sato").phone == "+819001230001"  # type: ignore[union-attr]
    # Other fields of the recipient may still be edited by the non-approver.
    data = {**VALID, "name": "佐藤 翔"}
    client.post(f"/admin/users/{recipient.id}/edit", data=data)
    assert _user("sato").name == "佐藤 翔"  # type: ignore[union-attr]
    # A user who receives nothing may have their number changed by any administrator.
    other = make_recipient(login="tanaka", name="田中", phone="+819001230003")
    client.post(f"/admin/users/{other.id}/edit", data={**VALID, "login": "tanaka", "phone": "+81-90-0123-0004"})
    assert _user("tanaka").phone == "+819001230004"  # type: ignore[union-attr]


def test_an_approver_changes_it_and_the_change_is_audited(client: FlaskClient, logged_in: AuthActions) -> None:
    recipient = _recipient_of_an_approved_setting()
    _edit_phone(client, recipient, "+81-90-9999-0002")
    assert _user("sato").phone == "+819099990002"  # type: ignore[union-attr]
    # Nobody empties the number of a recipient, approvers included.
    page = _edit_phone(client, recipient, "")
    assert "次の設定の宛先になっているため、電話番号を空にできません: SMS 通知設定「夜間連絡」" in page
    client.post("/admin/users/new", data={**VALID, "login": "suzuki", "phone": "+81-90-0123-0005"})
    page = client.get("/admin/users/phone-changes").get_data(as_text=True)
    rows = re.findall(r"<tr>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>", page)
    masked = [(login, re.sub(r" #[0-9a-f]{4}$", "", old), re.sub(r" #[0-9a-f]{4}$", "", new), by) for _at, login, old, new, by in rows]
    assert masked == [
        ("suzuki", "(未設定)", "+81-**-****-0005", "admin"),
        ("sato", "+81-**-****-0001", "+81-**-****-0002", "admin"),
    ]
    # Masked: the full numbers are not in the page.
    assert "0123-0001" not in page and "9999-0002" not in page
    assert re.match(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", rows[0][0])
    assert 'href="/admin/users/phone-changes">電話番号の変更履歴</a>' in client.get("/admin/users/").get_data(as_text=True)


def test_an_unchanged_number_is_not_audited(client: FlaskClient, logged_in: AuthActions) -> None:
    recipient = _recipient_of_an_approved_setting()
    _edit_phone(client, recipient, "+81 90 0123 0001")
    assert "変更履歴はありません。" in client.get("/admin/users/phone-changes").get_data(as_text=True)


def test_the_command_line_is_audited_too(client: FlaskClient, logged_in: AuthActions, runner: Any) -> None:
    result = runner.invoke(args=["create-user", "kato", "--no-login", "--phone", "+81-90-0123-0007"])
    assert result.exit_code == 0, result.output
    page = client.get("/admin/users/phone-changes").get_data(as_text=True)
    assert re.search(r"<td>kato</td>\s*<td>\(未設定\)</td>\s*<td>\+81-\*\*-\*\*\*\*-0007 #[0-9a-f]{4}</td>\s*<td>\(コマンドライン\)</td>", page)


def test_the_form_shows_numbers_as_the_manual_writes_them(client: FlaskClient, logged_in: AuthActions) -> None:
    recipient = make_recipient()
    page = client.get(f"/admin/users/{recipient.id}/edit").get_data(as_text=True)
    assert re.search(r'<input[^>]*id="phone"[^>]*value="\+81-90-0123-0001"', page)
    page = client.post(f"/admin/users/{recipient.id}/edit", data={**VALID, "phone": "+81 90 x"}).get_data(as_text=True)
    assert re.search(r'<input[^>]*id="phone"[^>]*value="\+81 90 x"', page)


def test_a_change_of_hidden_digits_still_shows(client: FlaskClient, logged_in: AuthActions) -> None:
    recipient = _recipient_of_an_approved_setting()
    _edit_phone(client, recipient, "+81-90-9999-0001")  # same last four digits
    page = client.get("/admin/users/phone-changes").get_data(as_text=True)
    [(old, new)] = re.findall(r"<td>sato</td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>", page)
    assert old.startswith("+81-**-****-0001 #") and new.startswith("+81-**-****-0001 #") and old != new
    assert "9999-0001" not in page
