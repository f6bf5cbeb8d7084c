"""メッセージテンプレート as a configuration kind that goes through approval.

A user without a template has no row; their first 編集 is recorded as a 作成 whose payload
names the user, so the row appears only when that change is approved. Later edits are
ordinary 編集 of the row. The 承認待ち list names a change by the user (target_name).
"""

from __future__ import annotations

from typing import Any

from flask import url_for

from .. import approval, phone
from ..approval import ConfigKind, Field, register
from ..extensions import db
from ..models import ACTION_CREATE, ACTION_UPDATE, MESSAGE_TEXT_MAX, PendingChange, User, UserMessageTemplate
from . import store

LABEL = "メッセージテンプレート"
OPENING_LABEL = "着信直後に流すメッセージ"
CLOSING_LABEL = "通話終了時に流すメッセージ"
MESSAGE_FIELDS = (("opening_message", OPENING_LABEL), ("closing_message", CLOSING_LABEL))


def user_label(user: User) -> str:
    """A user as the list and diffs name them: 佐藤 翔太(sato), with the number when there is one."""
    text = f"{user.display_name}({user.login})"
    return f"{text} {phone.display(user.phone)}" if user.phone else text


def _user_text(user_id: Any) -> str:
    user = db.session.get(User, user_id) if user_id else None
    return user_label(user) if user is not None else "(削除されたユーザ)"


def change_name(user: User) -> str:
    """What a change of this user's template is called in 承認待ち (at most the column's 128)."""
    return f"{user.display_name}({user.login})"[:128]


def too_long(label: str, text: str) -> str | None:
    """The Japanese refusal of a message over MESSAGE_TEXT_MAX characters, else None."""
    if len(text) <= MESSAGE_TEXT_MAX:
        return None
    return f"{label}は {MESSAGE_TEXT_MAX:,} 文字以内で入力してください(現在 {len(text):,} 文字)。"


def _check(action: str, obj: Any, values: dict[str, Any]) -> str | None:
    """Refuse a change whose user is gone, a second 作成 for one user, or an over-long text."""
    user_id = obj.user_id if obj is not None else values.get("user_id")
    user = db.session.get(User, user_id) if user_id else None
    if user is None:
        return "対象のユーザが削除されているため、適用できません。"
    if action == ACTION_CREATE and store.find(user.id) is not None:
        return f"ユーザ「{user.display_name}」の{LABEL}は既に作成されています。画面を開き直して、編集し直してください。"
    for name, label in MESSAGE_FIELDS:
        reason = too_long(label, str(values.get(name) or ""))
        if reason:
            return reason
    return None


def user_id_of(change: PendingChange) -> int | None:
    """The user a change is about: named in a 作成, or the owner of the edited row."""
    if change.action == ACTION_CREATE:
        user_id = change.data.get("user_id")
        return int(user_id) if user_id else None
    row = db.session.get(UserMessageTemplate, change.target_id) if change.target_id else None
    return row.user_id if row is not None else None


def _page(change: PendingChange) -> str | None:
    user_id = user_id_of(change)
    if user_id is None or db.session.get(User, user_id) is None:
        return None
    return url_for("message_templates.show", user_id=user_id)


KIND = register(
    ConfigKind(
        key="message_template",
        label=LABEL,
        model=UserMessageTemplate,
        fields=(
            Field("user_id", "ユーザ", show=_user_text),
            Field("opening_message", OPENING_LABEL, show=lambda v: v or "(未設定)"),
            Field("closing_message", CLOSING_LABEL, show=lambda v: v or "(未設定)"),
        ),
        detail_endpoint="message_templates.show",
        check=_check,
        page_url=_page,
    )
)


def pending_of(user: User) -> list[PendingChange]:
    """The user's pending changes (a 作成 naming them, 編集 of their row), oldest first."""
    return [c for c in approval.pending_for(KIND) if user_id_of(c) == user.id]


def pending_create_of(user: User) -> PendingChange | None:
    """The user's pending 作成, if their first template waits for approval."""
    return next((c for c in pending_of(user) if c.action == ACTION_CREATE), None)


def submit(
    user: User, row: UserMessageTemplate | None, opening: str, closing: str, by: User, approve_now: bool
) -> tuple[PendingChange, UserMessageTemplate | None]:
    """Record the 編集 of a user's messages and, for 「編集と承認」, apply it (the caller commits).

    Without an approved row it is a 作成 of one; raises ApprovalError when nothing changed or
    the user's first template already waits for approval.
    """
    values: dict[str, Any] = {"opening_message": opening, "closing_message": closing}
    if row is None:
        if not opening and not closing:
            raise approval.ApprovalError("変更された項目がありません。")
        if pending_create_of(user) is not None:
            raise approval.ApprovalError(
                f"ユーザ「{user.display_name}」の{LABEL}は作成の承認待ちです。承認待ちの画面で承認または却下してから編集してください。"
            )
        # The name goes in the payload so the pending 作成 is unique per user (pending_changes' index).
        values.update(user_id=user.id, name=change_name(user))
        change, applied = approval.submit(KIND, ACTION_CREATE, by, approve_now, values=values)
    else:
        change, applied = approval.submit(KIND, ACTION_UPDATE, by, approve_now, values=values, obj=row)
    change.target_name = change_name(user)
    return change, applied
