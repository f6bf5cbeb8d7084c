"""The approval service itself: races and stale changes."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from xmonbridge import approval
from xmonbridge.extensions import db
from xmonbridge.models import STATUS_PENDING, STATUS_REJECTED, PendingChange, TwilioAccount, User
from xmonbridge.twilio_accounts.kind import KIND
from tests.conftest import AuthActions
from tests.factories import make_twilio_account


def test_a_change_decided_meanwhile_is_not_applied(app: Flask, admin: User) -> None:
    change = approval.request_change(KIND, "create", admin, {"name": "A", "account_sid": "AC" + "0" * 32})
    db.session.commit()
    assert change.status == STATUS_PENDING  # this session still believes so
    # A second approver decides it through another connection.
    with db.engine.begin() as other:
        other.execute(text("update pending_changes set status='approved' where id=:id"), {"id": change.id})
    try:
        approval.approve(change, admin)
    except approval.ApprovalError as exc:
        assert str(exc) == "この変更は既に処理されています。"
    else:
        raise AssertionError("approved twice")
    db.session.rollback()
    assert db.session.scalars(select(TwilioAccount)).all() == []


def test_deleting_an_object_closes_its_other_pending_changes(
    client: FlaskClient, logged_in: AuthActions
) -> None:
    account = make_twilio_account(name="A2")
    client.post(f"/admin/twilio/accounts/{account.id}/delete")  # pending 削除
    client.post(
        f"/admin/twilio/accounts/{account.id}/edit",
        data={"name": "A2-renamed", "account_sid": account.account_sid, "twiml_bin_url": "", "submit": "y"},
    )
    client.post(f"/admin/twilio/accounts/{account.id}/delete", data={"approve": "1"})  # 削除と承認
    statuses = db.session.scalars(select(PendingChange.status).order_by(PendingChange.id)).all()
    assert statuses == [STATUS_REJECTED, STATUS_REJECTED, "approved"]
    # A new account may reuse the id; the old pending changes can no longer touch it.
    make_twilio_account(name="A3")
    for change in db.session.scalars(select(PendingChange).where(PendingChange.status == STATUS_REJECTED)):
        page = client.post(f"/admin/twilio/approvals/{change.id}/approve", follow_redirects=True)
        assert "この変更は既に処理されています。" in page.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.scalars(select(TwilioAccount.name)).all() == ["A3"]


def test_a_refused_create_and_approve_leaves_no_pending_change(app: Flask) -> None:
    from sqlalchemy import func

    from tests.factories import make_user

    approver = make_user(login="approver", is_admin=True, is_approver=True)
    make_twilio_account(name="taken")
    values = {"name": "taken", "account_sid": "AC" + "1" * 32, "auth_token_encrypted": "x", "twiml_bin_url": None}
    with pytest.raises(approval.ApprovalError):
        approval.submit(KIND, "create", approver, True, values=values)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(PendingChange)) == 0
