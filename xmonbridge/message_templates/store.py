"""Per-user messages of button calls (メッセージテンプレート), as approved.

A user without a row hears no message of their own: both texts are "".
"""

from __future__ import annotations

from sqlalchemy import or_, select

from ..extensions import db
from ..models import User, UserMessageTemplate


def find(user_id: int) -> UserMessageTemplate | None:
    """The approved template of a user, or None when none was ever approved."""
    return db.session.scalar(select(UserMessageTemplate).where(UserMessageTemplate.user_id == user_id))


def messages_for(user_id: int) -> tuple[str, str]:
    """(着信直後に流すメッセージ, 通話終了時に流すメッセージ) of a user; "" for what is not set."""
    row = find(user_id)
    if row is None:
        return "", ""
    return row.opening_message or "", row.closing_message or ""


def listed_users() -> list[tuple[User, UserMessageTemplate | None]]:
    """Users a template matters for: those with a phone number, and any that have one; by login."""
    has_template = select(UserMessageTemplate.user_id)
    users = db.session.scalars(
        select(User).where(or_(User.phone.is_not(None), User.id.in_(has_template))).order_by(User.login)
    ).all()
    templates = {t.user_id: t for t in db.session.scalars(select(UserMessageTemplate))}
    return [(user, templates.get(user.id)) for user in users]
