"""ユーザ管理 views: 一覧, 新規作成, 詳細表示, 編集, 削除."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from .. import setting_usage
from ..access import admin_required
from ..extensions import db
from ..forms import EmptyForm
from ..models import User
from . import bp
from .forms import UserForm

LAST_ADMIN = "最後の管理者を削除・無効化することはできません。"


def _get_user_or_404(user_id: int) -> User:
    return db.get_or_404(User, user_id)


def _active_admins() -> int:
    return db.session.scalar(
        select(func.count()).select_from(User).where(User.is_admin.is_(True), User.login_disabled.is_(False))
    ) or 0


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
    form = UserForm()
    if form.validate_on_submit():
        user = User()
        form.save_to(user)
        db.session.add(user)
        db.session.commit()
        flash(f"ユーザ「{user.login}」を作成しました。", "success")
        return redirect(url_for("users.show", user_id=user.id))
    return render_template("users/form.html", form=form, user=None)


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
    form = UserForm(user=user)
    if form.validate_on_submit():
        was_active_admin = user.is_admin and not user.login_disabled
        stays_active_admin = form.is_admin.data and not form.login_disabled.data
        recipient_of = setting_usage.with_recipient(user.id) if user.phone and not form.phone.data else []
        if was_active_admin and not stays_active_admin and _active_admins() <= 1:
            form.is_admin.errors.append(LAST_ADMIN)
        elif recipient_of:
            form.phone.errors.append(f"次の設定の宛先になっているため、電話番号を空にできません: {'、'.join(recipient_of)}")
        else:
            form.save_to(user)
            db.session.commit()
            flash(f"ユーザ「{user.login}」を編集しました。", "success")
            return redirect(url_for("users.show", user_id=user.id))
    return render_template("users/form.html", form=form, user=user)


@bp.route("/<int:user_id>/delete", methods=["POST"])
@admin_required
def delete(user_id: int) -> Response:
    """Delete a user, never oneself nor the last administrator."""
    user = _get_user_or_404(user_id)
    if not EmptyForm().validate_on_submit():
        flash("削除できませんでした。画面を開き直してやり直してください。", "danger")
    elif user.id == current_user.id:
        flash("自分自身を削除することはできません。", "danger")
    elif user.is_admin and not user.login_disabled and _active_admins() <= 1:
        flash(LAST_ADMIN, "danger")
    elif settings := setting_usage.with_recipient(user.id):
        flash(f"ユーザ「{user.login}」は次の設定の宛先になっているため、削除できません: {'、'.join(settings)}", "danger")
    else:
        db.session.delete(user)
        db.session.commit()
        flash(f"ユーザ「{user.login}」を削除しました。", "success")
        return redirect(url_for("users.index"))
    return redirect(url_for("users.show", user_id=user.id))
