"""What the screens of approval-backed configuration share.

Twilio アカウント情報, 通話設定(シンプル通話) and SMS 通知設定 each record a PendingChange
through approval.submit() and, for 「…と承認」, apply it at once. This module holds what
their views, forms and kinds would otherwise each repeat: the outcome flash and redirect,
the 削除 / 削除と承認 view, and the rule that names are unique (in the form, counting
pending creates, and again when a change is approved).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import flash, redirect, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response
from wtforms import Field, SubmitField
from wtforms.validators import ValidationError

from . import approval
from .approval import ConfigKind
from .extensions import db
from .forms import BaseForm
from .models import ACTION_CREATE, ACTION_DELETE, ACTION_UPDATE, ACTIONS


@dataclass(frozen=True)
class ConfigPages:
    """A kind's screens: its blueprint's index and show views."""

    kind: ConfigKind
    blueprint: str
    # The show view's URL argument: account_id or setting_id.
    id_arg: str

    def index_url(self) -> str:
        """URL of the 一覧."""
        return url_for(f"{self.blueprint}.index")

    def show_url(self, obj_id: int) -> str:
        """URL of one object's 詳細表示."""
        values: dict[str, Any] = {self.id_arg: obj_id}
        return url_for(f"{self.blueprint}.show", **values)


class DeleteForm(BaseForm):
    """削除 / 削除と承認 on a detail page: the CSRF token, and which button was pressed."""

    submit = SubmitField("削除")
    # Present (any value) for 「削除と承認」.
    approve = SubmitField("削除と承認")


def add_error(field: Field, message: str) -> None:
    """Show one more message next to a field (after or without validation)."""
    field.errors = [*field.errors, message]


def _after_particle(label: str) -> str:
    """The label as it follows の: a Latin first word gets a space (の Twilio アカウント情報)."""
    return f" {label}" if label[:1].isascii() else label


def finish_change(pages: ConfigPages, action: str, applied: Any, name: str) -> Response:
    """Flash the outcome of a recorded change and go to the right page."""
    label, verb = pages.kind.label, ACTIONS[action]
    if applied is None:
        flash(f"{label}「{name}」の{verb}を承認待ちにしました。承認権限を持つユーザの承認後に反映されます。", "info")
        return redirect(pages.index_url())
    flash(f"{label}「{name}」を{verb}し、承認しました。", "success")
    if action == ACTION_DELETE:
        return redirect(pages.index_url())
    return redirect(pages.show_url(applied.id))


def save_change(pages: ConfigPages, form: Any, obj: Any = None) -> Response | None:
    """Record the form's 作成/編集, or apply it at once (「…と承認」); None when refused.

    The form has `name`, `submit_approve` and `values()`; a refusal is shown under 名称.
    """
    action = ACTION_CREATE if obj is None else ACTION_UPDATE
    name = form.name.data if obj is None else obj.name
    try:
        _change, applied = approval.submit(
            pages.kind, action, current_user, bool(form.submit_approve.data), values=form.values(), obj=obj
        )
    except approval.ApprovalError as exc:
        db.session.rollback()
        add_error(form.name, str(exc))
        return None
    db.session.commit()
    return finish_change(pages, action, applied, name)


def delete_view(pages: ConfigPages, obj: Any) -> Response:
    """Propose (削除) or apply (削除と承認) the deletion of obj, from its detail page."""
    obj_id, name = obj.id, obj.name
    form = DeleteForm()
    if not form.validate_on_submit():
        flash("削除できませんでした。画面を開き直してやり直してください。", "danger")
        return redirect(pages.show_url(obj_id))
    try:
        _change, applied = approval.submit(pages.kind, ACTION_DELETE, current_user, bool(form.approve.data), obj=obj)
    except approval.ApprovalError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return redirect(pages.show_url(obj_id))
    db.session.commit()
    return finish_change(pages, ACTION_DELETE, applied, name)


def check_unique_name(kind: ConfigKind, name: str, current: Any) -> None:
    """Form validation: refuse a name another object, or a pending create, of the kind has."""
    model: Any = kind.model
    other = db.session.scalar(select(model).where(model.name == name))
    if other is not None and other is not current:
        raise ValidationError("この名称は既に使われています。")
    for change in approval.pending_for(kind):
        if change.action == ACTION_CREATE and change.data.get("name") == name:
            raise ValidationError(f"この名称で作成を承認待ちの{_after_particle(kind.label)}があります。")


def name_taken_reason(label: str, model: Any, obj: Any, values: dict[str, Any]) -> str | None:
    """Approval check: the reason a change cannot take its name, which got taken meanwhile."""
    if "name" not in values:
        return None
    other = db.session.scalar(select(model).where(model.name == values["name"]))
    if other is not None and other is not obj:
        return f"名称「{values['name']}」の{_after_particle(label)}が既に存在するため、適用できません。"
    return None
