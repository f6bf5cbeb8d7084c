"""Twilio アカウント情報 views: 一覧, 新規作成, 詳細表示, 編集, 削除, all through approval."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from .. import approval, twiml
from ..access import admin_required
from ..extensions import db
from ..forms import EmptyForm
from ..models import ACTION_CREATE, ACTION_DELETE, ACTION_UPDATE, TwilioAccount, User, XmonSettings
from . import bp
from .forms import TwilioAccountForm
from .kind import KIND


def _get_account_or_404(account_id: int) -> TwilioAccount:
    return db.get_or_404(TwilioAccount, account_id)


def _finish(action: str, applied: object | None, name: str) -> Response:
    """Flash the outcome of a change and go to the right page."""
    verb = {ACTION_CREATE: "作成", ACTION_UPDATE: "編集", ACTION_DELETE: "削除"}[action]
    if applied is None:
        flash(f"Twilio アカウント情報「{name}」の{verb}を承認待ちにしました。承認権限を持つユーザの承認後に反映されます。", "info")
        return redirect(url_for("twilio_accounts.index"))
    flash(f"Twilio アカウント情報「{name}」を{verb}し、承認しました。", "success")
    if action == ACTION_DELETE:
        return redirect(url_for("twilio_accounts.index"))
    return redirect(url_for("twilio_accounts.show", account_id=applied.id))  # type: ignore[attr-defined]


def _help_context() -> dict[str, object]:
    return {"bin_twiml": twiml.bin_snippet(XmonSettings.get().voice)}


@bp.route("/")
@admin_required
def index() -> str:
    """List accounts; show the 事前準備 guidance while X-MON URL or user phones are missing."""
    accounts = db.session.scalars(select(TwilioAccount).order_by(TwilioAccount.name)).all()
    missing_url = not XmonSettings.get().xmon_url
    missing_phone = db.session.scalar(select(User.id).where(User.phone.is_not(None)).limit(1)) is None
    return render_template(
        "twilio_accounts/index.html",
        accounts=accounts,
        pending=approval.pending_for(KIND),
        missing_url=missing_url,
        missing_phone=missing_phone,
    )


@bp.route("/new", methods=["GET", "POST"])
@admin_required
def new() -> Response | str:
    """Propose (作成) or create and approve (作成と承認) an account."""
    form = TwilioAccountForm()
    if form.validate_on_submit():
        try:
            _change, applied = approval.submit(
                KIND, ACTION_CREATE, current_user, bool(form.submit_approve.data), values=form.values()
            )
        except approval.ApprovalError as exc:
            db.session.rollback()
            form.name.errors.append(str(exc))
        else:
            db.session.commit()
            return _finish(ACTION_CREATE, applied, form.name.data)
    return render_template("twilio_accounts/form.html", form=form, account=None, **_help_context())


@bp.route("/<int:account_id>")
@admin_required
def show(account_id: int) -> str:
    """Show one account (never its AUTH TOKEN)."""
    account = _get_account_or_404(account_id)
    pending = [c for c in approval.pending_for(KIND) if c.target_id == account.id]
    return render_template(
        "twilio_accounts/show.html", account=account, pending=pending, delete_form=EmptyForm(), **_help_context()
    )


@bp.route("/<int:account_id>/edit", methods=["GET", "POST"])
@admin_required
def edit(account_id: int) -> Response | str:
    """Propose (編集) or apply (編集と承認) changes; a blank AUTH TOKEN keeps the old one."""
    account = _get_account_or_404(account_id)
    form = TwilioAccountForm(account=account)
    if form.validate_on_submit():
        try:
            _change, applied = approval.submit(
                KIND, ACTION_UPDATE, current_user, bool(form.submit_approve.data), values=form.values(), obj=account
            )
        except approval.ApprovalError as exc:
            db.session.rollback()
            form.name.errors.append(str(exc))
        else:
            db.session.commit()
            return _finish(ACTION_UPDATE, applied, account.name)
    db.session.rollback()
    return render_template("twilio_accounts/form.html", form=form, account=account, **_help_context())


@bp.route("/<int:account_id>/delete", methods=["POST"])
@admin_required
def delete(account_id: int) -> Response:
    """Propose (削除) or apply (削除と承認) the deletion of an account."""
    account = _get_account_or_404(account_id)
    if not EmptyForm().validate_on_submit():
        flash("削除できませんでした。画面を開き直してやり直してください。", "danger")
        return redirect(url_for("twilio_accounts.show", account_id=account.id))
    name = account.name
    approve_now = request.form.get("approve") == "1"
    try:
        _change, applied = approval.submit(KIND, ACTION_DELETE, current_user, approve_now, obj=account)
    except approval.ApprovalError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return redirect(url_for("twilio_accounts.show", account_id=account_id))
    db.session.commit()
    return _finish(ACTION_DELETE, applied, name)
