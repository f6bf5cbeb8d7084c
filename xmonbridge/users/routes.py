"""ユーザ管理 views: 一覧, 新規作成, 詳細表示, 編集, 削除."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from ..access import admin_required
from ..calls import recipients as call_recipients
from ..extensions import db
from ..forms import EmptyForm
from ..models import User, utcnow
from . import bp, phone_audit, rules
from .forms import LOGIN_TAKEN, UserForm


PHONE_CHANGES_SHOWN = 200


def _get_user_or_404(user_id: int) -> User:
    return db.get_or_404(User, user_id)


@bp.route("/")
@admin_required
def index() -> str:
    """List users by login name."""
    users = db.session.scalars(select(User).order_by(User.login)).all()
    return render_template("users/index.html", users=users, delete_form=EmptyForm())


@bp.route("/new", methods=["GET", "POST"])
@admin_required
def new() -> Response | str:
    """Create a user."""
    form = _form(None)
    if form.validate_on_submit() and not _refused(form, None):
        user = User()
        form.save_to(user)
        db.session.add(user)
        phone_audit.record(user, None, current_user)
        if _committed(form):
            flash(f"ユーザ「{user.login}」を作成しました。", "success")
            return redirect(url_for("users.show", user_id=user.id))
    return render_template("users/form.html", form=form, user=None)


@bp.route("/phone-changes")
@admin_required
def phone_changes() -> str:
    """List the newest changes of 連絡先電話番号, masked."""
    return render_template("users/phone_changes.html", changes=phone_audit.recent(PHONE_CHANGES_SHOWN), limit=PHONE_CHANGES_SHOWN)


@bp.route("/<int:user_id>")
@admin_required
def show(user_id: int) -> str:
    """Show one user."""
    return render_template("users/show.html", user=_get_user_or_404(user_id), delete_form=EmptyForm())


@bp.route("/<int:user_id>/edit", methods=["GET", "POST"])
@admin_required
def edit(user_id: int) -> Response | str:
    """Edit a user; a blank password keeps the old one."""
    user = _get_user_or_404(user_id)
    form = _form(user)
    if form.validate_on_submit() and not _refused(form, user):
        old_phone = user.phone
        form.save_to(user)
        phone_audit.record(user, old_phone, current_user)
        if _committed(form):
            flash(f"ユーザ「{user.login}」を編集しました。", "success")
            return redirect(url_for("users.show", user_id=user.id))
    return render_template("users/form.html", form=form, user=user)


@bp.route("/<int:user_id>/delete", methods=["POST"])
@admin_required
def delete(user_id: int) -> Response:
    """Delete a user, within the guards of rules.delete_problem()."""
    user = _get_user_or_404(user_id)
    if not EmptyForm().validate_on_submit():
        flash("削除できませんでした。画面を開き直してやり直してください。", "danger")
    elif problem := rules.delete_problem(user, current_user):
        flash(problem, "danger")
    else:
        # Whoever still calls them (an active button call they were taken off) stops first.
        call_recipients.drop_user(user.id, utcnow())
        db.session.delete(user)
        db.session.commit()
        flash(f"ユーザ「{user.login}」を削除しました。", "success")
        return redirect(url_for("users.index"))
    return redirect(url_for("users.show", user_id=user.id))


def _form(user: User | None) -> UserForm:
    form = UserForm(user=user)
    if not current_user.is_approver:
        # Shown, but not changeable: only approvers hand out 承認権限.
        form.is_approver.render_kw = {"disabled": True}
        form.is_approver.description = rules.APPROVER_ONLY
    return form


def _committed(form: UserForm) -> bool:
    """Commit the form's save; on a login name taken meanwhile, roll back and say so under ログイン名.

    The form checked the name, but another request can take it between that check and
    this commit (two clicks, two tabs); the unique index of users.login then refuses it.
    """
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        form.login.errors.append(LOGIN_TAKEN)
        return False
    return True


def _refused(form: UserForm, user: User | None) -> bool:
    """Put each guard's message next to its field; tell whether any refused the save."""
    problems = rules.save_problems(user, form, current_user)
    for field, message in problems:
        field.errors.append(message)
    return bool(problems)
