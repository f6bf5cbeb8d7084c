"""Twilio アカウント情報 views: 一覧, 新規作成, 詳細表示, 編集, 削除, all through approval."""

from __future__ import annotations

from flask import render_template
from sqlalchemy import select
from werkzeug.wrappers import Response

from .. import approval, twiml
from ..access import admin_required
from ..config_views import ConfigPages, DeleteForm, delete_view, save_change
from ..extensions import db
from ..models import ACTIONS, TwilioAccount, User, XmonSettings, utcnow
from ..webhooks.signature import previous_token_until
from . import bp
from .forms import TwilioAccountForm
from .kind import KIND

PAGES = ConfigPages(KIND, "twilio_accounts", "account_id")


def _get_account_or_404(account_id: int) -> TwilioAccount:
    return db.get_or_404(TwilioAccount, account_id)


def _help_context() -> dict[str, object]:
    return {"bin_twiml": twiml.bin_snippet(XmonSettings.get().effective_voice)}


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
        actions=ACTIONS,
        missing_url=missing_url,
        missing_phone=missing_phone,
    )


@bp.route("/new", methods=["GET", "POST"])
@admin_required
def new() -> Response | str:
    """Propose (作成) or create and approve (作成と承認) an account."""
    form = TwilioAccountForm()
    if form.validate_on_submit():
        response = save_change(PAGES, form)
        if response is not None:
            return response
    return render_template("twilio_accounts/form.html", form=form, account=None, **_help_context())


@bp.route("/<int:account_id>")
@admin_required
def show(account_id: int) -> str:
    """Show one account (never its AUTH TOKEN), and until when its previous AUTH TOKEN is accepted."""
    account = _get_account_or_404(account_id)
    pending = [c for c in approval.pending_for(KIND) if c.target_id == account.id]
    return render_template(
        "twilio_accounts/show.html",
        account=account,
        pending=pending,
        delete_form=DeleteForm(),
        previous_token_until=previous_token_until(account, utcnow()),
        **_help_context(),
    )


@bp.route("/<int:account_id>/edit", methods=["GET", "POST"])
@admin_required
def edit(account_id: int) -> Response | str:
    """Propose (編集) or apply (編集と承認) changes; a blank AUTH TOKEN keeps the old one."""
    account = _get_account_or_404(account_id)
    form = TwilioAccountForm(account=account)
    if form.validate_on_submit():
        response = save_change(PAGES, form, account)
        if response is not None:
            return response
    db.session.rollback()
    return render_template("twilio_accounts/form.html", form=form, account=account, **_help_context())


@bp.route("/<int:account_id>/delete", methods=["POST"])
@admin_required
def delete(account_id: int) -> Response:
    """Propose (削除) or apply (削除と承認) the deletion of an account."""
    return delete_view(PAGES, _get_account_or_404(account_id))
