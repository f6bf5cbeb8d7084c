"""Login and logout views."""

from __future__ import annotations

import functools
import secrets
from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response

from ..extensions import db
from ..forms import EmptyForm
from ..models import User
from . import bp, sessions, throttle
from .forms import LoginForm

LOCKED = "ログインの失敗が続いたため、このログイン名は一時的にロックされています。しばらくしてから再度お試しください。"
BAD_LOGIN = "ログイン名またはパスワードが正しくありません。"


def _home() -> str:
    return url_for("twilio_accounts.index") if current_user.is_admin else url_for("auth.home")


@bp.route("/")
def index() -> Response:
    """Send visitors to their start page."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    return redirect(_home())


@bp.route("/home")
@login_required
def home() -> str:
    """Start page of users who are not administrators."""
    return render_template("auth/home.html")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    """Log a user in; a name is locked per client address after repeated failures."""
    form = LoginForm()
    if form.validate_on_submit():
        name, address = form.login.data, request.remote_addr or ""
        reserved = throttle.reserve(name, address)
        # Commit the reservation before the slow hash, so parallel requests see it.
        db.session.commit()
        if not reserved:
            form.login.errors.append(LOCKED)
        else:
            user = _authenticate(name, form.password.data)
            if user is None:
                form.password.errors.append(BAD_LOGIN)
            else:
                throttle.clear(name, address)
                sessions.start(user)
                db.session.commit()
                login_user(user)
                return redirect(_safe_next(request.args.get("next", "")) or _home())
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Response:
    """Log out (a POST with a CSRF token); the session's row goes, so a copied cookie stops working."""
    if EmptyForm().validate_on_submit():
        sessions.end()
        db.session.commit()
        logout_user()
        flash("ログアウトしました。", "info")
    return redirect(url_for("auth.login"))


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, made like real ones (werkzeug's default method)."""
    return generate_password_hash(secrets.token_urlsafe(16))


def _authenticate(name: str, password: str) -> User | None:
    """Return the user named name if password is theirs and they may log in.

    A missing user, one who may not log in or one without a password is checked against a
    dummy hash: the same work either way, so the answer time does not tell whether a name exists.
    """
    user = db.session.scalar(select(User).where(User.login == name))
    hashed = user.password_hash if user is not None and not user.login_disabled else None
    matches = check_password_hash(hashed or _dummy_hash(), password)
    return user if hashed and matches else None


def _safe_next(target: str) -> str | None:
    """Return target if it is a path on this site, else None.

    Browsers read `\\` as `/` and drop tabs and newlines, so `/\\evil.example` or
    `/<TAB>/evil.example` would leave the site; control characters would also break the
    Location header.
    """
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    if any(ord(char) < 32 or ord(char) == 127 for char in target):
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target
