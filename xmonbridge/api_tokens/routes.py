"""API トークン views: 一覧, 新規作成 (the token shown once), 無効化."""

from __future__ import annotations

from flask import flash, make_response, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from ..access import admin_required
from ..alerts.commands import TOKEN_MACRO, resource_line
from ..extensions import db
from ..forms import EmptyForm
from ..models import ApiToken
from . import bp, tokens
from .forms import TokenForm


@bp.route("/")
@admin_required
def index() -> str:
    """List every token, newest first, with who made it, its last use and its state."""
    return render_template("api_tokens/index.html", rows=tokens.newest_first(), revoke_form=EmptyForm())


@bp.route("/new", methods=["GET", "POST"])
@admin_required
def new() -> Response | str:
    """Create a token and show it once; only its hash is kept."""
    form = TokenForm()
    if form.validate_on_submit():
        row, token = tokens.create(form.name.data, current_user)
        db.session.commit()
        # Rendered in the answer to the POST, never put in the session or a redirect: the
        # page is the one place the token appears, and it must not be cached either.
        response = make_response(
            render_template(
                "api_tokens/created.html", row=row, token=token, token_macro=TOKEN_MACRO, resource_line=resource_line(token)
            )
        )
        response.headers["Cache-Control"] = "no-store"
        return response
    return render_template("api_tokens/form.html", form=form)


@bp.route("/<int:token_id>/revoke", methods=["POST"])
@admin_required
def revoke(token_id: int) -> Response:
    """Revoke a token at once: the alert API refuses it from the next request on."""
    row = db.get_or_404(ApiToken, token_id)
    if EmptyForm().validate_on_submit():
        if tokens.revoke(row, current_user):
            db.session.commit()
            flash(f"API トークン「{row.name}」を無効化しました。このトークンによる通知は受け付けられません。", "success")
        else:
            flash(f"API トークン「{row.name}」は既に無効化されています。", "info")
    return redirect(url_for("api_tokens.index"))
