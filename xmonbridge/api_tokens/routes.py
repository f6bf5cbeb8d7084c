"""API トークン views: 一覧, 新規作成 (the token shown once), 無効化."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from ..access import admin_required
from ..extensions import db
from ..forms import EmptyForm
from ..models import ApiToken, utcnow
from . import bp, tokens
from .forms import ApiTokenForm


@bp.route("/")
@admin_required
def index() -> str:
    """List tokens, active ones first, newest first."""
    rows = db.session.scalars(
        select(ApiToken).order_by(ApiToken.revoked_at.is_not(None), ApiToken.created_at.desc(), ApiToken.id.desc())
    ).all()
    return render_template("api_tokens/index.html", tokens=rows)


@bp.route("/new", methods=["GET", "POST"])
@admin_required
def new() -> Response | str:
    """Create a token and show it in this response only; the database keeps its hash."""
    form = ApiTokenForm()
    if form.validate_on_submit():
        token, token_hash, hint = tokens.new_token()
        row = ApiToken(
            name=form.name.data,
            token_hash=token_hash,
            hint=hint,
            created_by_id=current_user.id,
            created_by_login=current_user.login,
        )
        db.session.add(row)
        db.session.commit()
        return render_template("api_tokens/created.html", api_token=row, token=token)
    return render_template("api_tokens/form.html", form=form)


@bp.route("/<int:token_id>/revoke", methods=["POST"])
@admin_required
def revoke(token_id: int) -> Response:
    """Revoke (after the page's confirmation): the API refuses the token from then on; the row stays."""
    row = db.get_or_404(ApiToken, token_id)
    if not EmptyForm().validate_on_submit():
        flash("無効化できませんでした。画面を開き直してやり直してください。", "danger")
    elif row.revoked_at is not None:
        flash(f"API トークン「{row.name}」は既に無効化されています。", "info")
    else:
        row.revoked_at = utcnow()
        row.revoked_by_login = current_user.login
        db.session.commit()
        flash(f"API トークン「{row.name}」を無効化しました。", "success")
    return redirect(url_for("api_tokens.index"))
