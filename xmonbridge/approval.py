"""Approval of Twilio 連携設定 changes (R4), generic over every configuration kind.

A form's 「作成」/「編集」/「削除」 records a PendingChange and leaves the configuration
tables untouched; only approve() writes them. So every other module, reading those
tables, sees approved state only. 「作成と承認」/「編集と承認」 record and approve at once,
for users with 承認権限.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import abort
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .extensions import db
from .models import (
    ACTION_CREATE,
    ACTION_DELETE,
    ACTION_UPDATE,
    STATUS_APPROVED,
    STATUS_PENDING,
    STATUS_REJECTED,
    PendingChange,
    User,
    utcnow,
)

SECRET_CHANGED = "変更あり"
SECRET_SET = "設定あり"
SECRET_UNCHANGED = "変更なし"


class ApprovalError(Exception):
    """A change that cannot be applied; str() is the Japanese reason."""


@dataclass(frozen=True)
class Field:
    """One field of a configuration kind, as shown in diffs."""

    name: str
    label: str
    secret: bool = False
    # Turns a stored value into text for the diff (ids into names, lists into lines).
    show: Callable[[Any], str] | None = None
    # A value the change uses when it is applied, not a column of the object: shown only in
    # the changes that carry it.
    transient: bool = False

    def text(self, value: Any) -> str:
        """Return the value as shown in a diff."""
        if self.show is not None:
            return self.show(value)
        if value is None or value == "":
            return "(未設定)"
        return str(value)


@dataclass(frozen=True)
class ConfigKind:
    """A configuration object type that goes through approval."""

    key: str
    label: str
    model: type
    fields: tuple[Field, ...]
    # Endpoint of the object's detail page, called with id=.
    detail_endpoint: str
    # Read the current values of an object (default: its attributes).
    snapshot: Callable[[Any], dict[str, Any]] | None = None
    # Write values into an object (default: setattr per field).
    apply: Callable[[Any, dict[str, Any]], None] | None = None
    # Return a Japanese reason when the change must not be applied now, else None.
    check: Callable[[str, Any, dict[str, Any]], str | None] | None = None
    # URL of the page where a change's object is seen and edited, for the 承認待ち list
    # (called in a request with the PendingChange); None there: no link.
    page_url: Callable[[PendingChange], str | None] | None = None
    # Apply a 作成 that is more than one row of model (設定の取り込み writes many tables), given
    # the values and the approver; returns the object whose id the change records, or None.
    create: Callable[[dict[str, Any], User], Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def values_of(self, obj: Any) -> dict[str, Any]:
        """Current values of obj, keyed by field name."""
        if self.snapshot is not None:
            return self.snapshot(obj)
        return {f.name: getattr(obj, f.name) for f in self.fields if not f.transient}

    def write(self, obj: Any, values: dict[str, Any]) -> None:
        """Write values into obj."""
        if self.apply is not None:
            self.apply(obj, values)
            return
        for f in self.fields:
            if f.name in values and not f.transient:
                setattr(obj, f.name, values[f.name])


REGISTRY: dict[str, ConfigKind] = {}


def register(kind: ConfigKind) -> ConfigKind:
    """Make a kind known to the 承認待ち screen."""
    REGISTRY[kind.key] = kind
    return kind


@dataclass
class DiffRow:
    """One line of a change's field-by-field comparison."""

    label: str
    before: str
    after: str
    changed: bool


def request_change(
    kind: ConfigKind, action: str, user: User, values: dict[str, Any] | None = None, obj: Any = None
) -> PendingChange:
    """Record a pending create, update or delete; the configuration stays as it was."""
    values = dict(values or {})
    if action == ACTION_UPDATE and obj is not None:
        # Keep only what differs, so the diff and the later apply touch nothing else.
        current = kind.values_of(obj)
        secrets = {f.name for f in kind.fields if f.secret}
        values = {k: v for k, v in values.items() if (k in secrets and v) or current.get(k) != v}
        if not values:
            raise ApprovalError("変更された項目がありません。")
    name = values.get("name") or (getattr(obj, "name", "") if obj is not None else "")
    change = PendingChange(
        kind=kind.key,
        action=action,
        target_id=getattr(obj, "id", None),
        target_name=str(name),
        requested_by_id=user.id,
    )
    change.data = values
    db.session.add(change)
    try:
        # No savepoint: with pysqlite a SAVEPOINT that opens the transaction commits on its
        # RELEASE, so a refused 「…と承認」 would leave its pending change behind. Every
        # caller rolls back on ApprovalError instead.
        db.session.flush()
    except IntegrityError as exc:
        # Two requests raced past the forms' checks; the unique indexes of pending_changes
        # keep one pending 作成 per name and one pending 削除 per object.
        if action == ACTION_DELETE:
            raise ApprovalError(f"この{kind.label}の削除は既に承認待ちです。") from exc
        # The same words as the form's check (config_views.check_unique_name).
        label = f" {kind.label}" if kind.label[:1].isascii() else kind.label
        raise ApprovalError(f"この名称で作成を承認待ちの{label}があります。") from exc
    return change


def _claim(change: PendingChange, status: str, user: User) -> None:
    """Decide a change only if it is still pending: a conditional UPDATE, so two approvers
    clicking at once cannot both apply it (the second one's UPDATE matches no row)."""
    now = utcnow()
    claimed = db.session.execute(
        update(PendingChange)
        .where(PendingChange.id == change.id, PendingChange.status == STATUS_PENDING)
        .values(status=status, decided_by_id=user.id, decided_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        raise ApprovalError("この変更は既に処理されています。")
    change.status, change.decided_by_id, change.decided_at = status, user.id, now


def approve(change: PendingChange, user: User) -> Any:
    """Apply a pending change to the configuration tables and mark it approved.

    1. Claim the change (still pending, nobody else took it).
    2. Check it still applies (target exists, names free, references valid).
    3. Write the configuration; a deletion also closes the other pending changes of
       that object, so none of them can later land on a new object reusing its id.
    Any ApprovalError leaves it to the caller to roll back, claim included.
    """
    if not user.is_approver:
        abort(403)
    _claim(change, STATUS_APPROVED, user)
    kind = REGISTRY[change.kind]
    values = change.data
    obj = None
    if change.action != ACTION_CREATE:
        obj = db.session.get(kind.model, change.target_id)
        if obj is None:
            raise ApprovalError(f"対象の{kind.label}は既に削除されています。")
    if kind.check is not None:
        reason = kind.check(change.action, obj, values)
        if reason:
            raise ApprovalError(reason)
    if change.action == ACTION_CREATE and kind.create is not None:
        obj = kind.create(values, user)
    elif change.action == ACTION_CREATE:
        obj = kind.model()
        kind.write(obj, values)
        db.session.add(obj)
    elif change.action == ACTION_UPDATE:
        kind.write(obj, values)
    elif change.action == ACTION_DELETE:
        db.session.delete(obj)
        _close_pending_of(kind, change.target_id, user)
    try:
        db.session.flush()
    except IntegrityError as exc:
        raise ApprovalError(f"{kind.label}の制約に反するため、適用できません。") from exc
    if change.action == ACTION_CREATE and obj is not None:
        change.target_id = obj.id
    return obj


def _close_pending_of(kind: ConfigKind, target_id: int | None, user: User) -> None:
    """Reject every pending change of one object (it is being deleted)."""
    db.session.execute(
        update(PendingChange)
        .where(
            PendingChange.kind == kind.key,
            PendingChange.target_id == target_id,
            PendingChange.status == STATUS_PENDING,
        )
        .values(status=STATUS_REJECTED, decided_by_id=user.id, decided_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def reject(change: PendingChange, user: User) -> None:
    """Discard a pending change."""
    if not user.is_approver:
        abort(403)
    _claim(change, STATUS_REJECTED, user)


def submit(
    kind: ConfigKind,
    action: str,
    user: User,
    approve_now: bool,
    values: dict[str, Any] | None = None,
    obj: Any = None,
) -> tuple[PendingChange, Any]:
    """Record a change and, for 「…と承認」, approve it at once (approvers only)."""
    if approve_now and not user.is_approver:
        abort(403)
    if approve_now and action == ACTION_DELETE and obj is not None:
        # 削除と承認 supersedes a pending 削除 (and every other pending change) of the object;
        # rolled back with everything else if the deletion is refused.
        _close_pending_of(kind, obj.id, user)
    change = request_change(kind, action, user, values, obj)
    applied = approve(change, user) if approve_now else None
    return change, applied


def diff(change: PendingChange) -> list[DiffRow]:
    """Compare a change with the running configuration, field by field; secrets hidden."""
    kind = REGISTRY[change.kind]
    obj = db.session.get(kind.model, change.target_id) if change.target_id else None
    current = kind.values_of(obj) if obj is not None and change.status == STATUS_PENDING else {}
    proposed = change.data
    rows = []
    for f in kind.fields:
        if f.transient and f.name not in proposed:
            continue
        if f.secret:
            if change.action == ACTION_DELETE:
                continue
            has_new = bool(proposed.get(f.name))
            if change.action == ACTION_CREATE:
                rows.append(DiffRow(f.label, "", SECRET_SET if has_new else "(未設定)", has_new))
            else:
                rows.append(DiffRow(f.label, "", SECRET_CHANGED if has_new else SECRET_UNCHANGED, has_new))
            continue
        before = f.text(current[f.name]) if f.name in current else ""
        if change.action == ACTION_DELETE:
            rows.append(DiffRow(f.label, before, "", True))
        elif f.name in proposed:
            after = f.text(proposed[f.name])
            rows.append(DiffRow(f.label, before, after, before != after))
        else:
            rows.append(DiffRow(f.label, before, before, False))
    return rows


def page_url(change: PendingChange) -> str | None:
    """The page of the object a change is about, when its kind has one."""
    kind = REGISTRY[change.kind]
    return kind.page_url(change) if kind.page_url is not None else None


def pending_for(kind: ConfigKind) -> list[PendingChange]:
    """Pending changes of one kind, oldest first."""
    return list(
        db.session.scalars(
            select(PendingChange)
            .where(PendingChange.kind == kind.key, PendingChange.status == STATUS_PENDING)
            .order_by(PendingChange.id)
        )
    )
