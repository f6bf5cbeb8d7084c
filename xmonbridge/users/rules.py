"""The guards of ユーザ管理: who may change or delete which user.

Roles are the root of approval (R4): an administrator without 承認権限 must not be able to
give it to anyone (themself included) nor take over an approver's login, or approval
could be bypassed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from wtforms import Field

from .. import setting_usage
from ..extensions import db
from ..models import User

LAST_ADMIN = "最後の管理者を削除・無効化することはできません。"
LAST_APPROVER = "承認権限を持つ最後のユーザの承認権限を外す・無効化・削除することはできません。"
APPROVER_ONLY = "承認権限の付与・取り消しは、承認権限を持つユーザのみが行えます。"
PROTECTED = "承認権限を持つユーザの編集・削除は、承認権限を持つユーザのみが行えます。"
APPROVER_NEEDS_ADMIN = "承認権限は管理者にのみ付与できます。"
PHONE_APPROVER_ONLY = "次の承認済みの設定の宛先になっているため、電話番号の変更は承認権限を持つユーザのみが行えます: {}"


def _active_admins() -> int:
    return db.session.scalar(
        select(func.count()).select_from(User).where(User.is_admin.is_(True), User.login_disabled.is_(False))
    ) or 0


def _active_approvers() -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.is_approver.is_(True), User.is_admin.is_(True), User.login_disabled.is_(False))
    ) or 0


def _active(is_admin: bool, is_approver: bool, disabled: bool) -> tuple[bool, bool]:
    """(active administrator, active approver) for these role values."""
    return is_admin and not disabled, is_approver and is_admin and not disabled


def save_problems(user: User | None, form: Any, actor: User) -> list[tuple[Field, str]]:
    """What forbids saving the form into user (None: a new user), as (field, message) pairs."""
    problems: list[tuple[Field, str]] = []
    had_approver = bool(user and user.is_approver)
    if user is not None and had_approver and not actor.is_approver:
        problems.append((form.is_approver, PROTECTED))
    elif form.is_approver.data != had_approver and not actor.is_approver:
        problems.append((form.is_approver, APPROVER_ONLY))
    if form.is_approver.data and not form.is_admin.data:
        problems.append((form.is_approver, APPROVER_NEEDS_ADMIN))
    if user is None:
        return problems
    was_admin, was_approver = _active(user.is_admin, user.is_approver, user.login_disabled)
    stays_admin, stays_approver = _active(form.is_admin.data, form.is_approver.data, form.login_disabled.data)
    if was_admin and not stays_admin and _active_admins() <= 1:
        problems.append((form.is_admin, LAST_ADMIN))
    if was_approver and not stays_approver and _active_approvers() <= 1:
        problems.append((form.is_approver, LAST_APPROVER))
    if user.phone != form.phone.data:
        # The number decides where approved settings call: changing it for a recipient is
        # as strong as an approved change, so only approvers may, and nobody may empty it.
        settings = setting_usage.with_recipient(user.id)
        if settings and not form.phone.data:
            problems.append((form.phone, f"次の設定の宛先になっているため、電話番号を空にできません: {'、'.join(settings)}"))
        elif settings and not actor.is_approver:
            problems.append((form.phone, PHONE_APPROVER_ONLY.format("、".join(settings))))
    return problems


def delete_problem(user: User, actor: User) -> str | None:
    """Why user must not be deleted by actor, or None."""
    if user.id == actor.id:
        return "自分自身を削除することはできません。"
    if user.is_approver and not actor.is_approver:
        return PROTECTED
    is_admin, is_approver = _active(user.is_admin, user.is_approver, user.login_disabled)
    if is_admin and _active_admins() <= 1:
        return LAST_ADMIN
    if is_approver and _active_approvers() <= 1:
        return LAST_APPROVER
    settings = setting_usage.with_recipient(user.id)
    if settings:
        return f"ユーザ「{user.login}」は次の設定の宛先になっているため、削除できません: {'、'.join(settings)}"
    return None
