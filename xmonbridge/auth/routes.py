"""Login and logout views."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from ..extensions import db
from ..forms import EmptyForm
from ..models import User
from . import bp, throttle
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
    """Log a user in, slowing down repeated failures per login name."""
    form = LoginForm()
    if form.validate_on_submit():
        name, address = form.login.data, request.remote_addr or ""
        if throttle.locked(name, address):
            form.login.errors.append(LOCKED)
        else:
            user = db.session.scalar(select(User).where(User.login == name))
            if user is None or user.login_disabled or not user.check_password(form.password.data):
                throttle.record_failure(name, address)
                db.session.commit()
                form.password.errors.append(BAD_LOGIN)
            else:
                throttle.clear(name, address)
                db.session.commit()
                login_user(user)
                target = request.args.get("next", "")
                # Only local paths: an absolute URL here would be an open redirect.
                if not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
                    target = _home()
                return redirect(target)
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Response:
    """Log out (a POST with a CSRF token)."""
    if EmptyForm().validate_on_submit():
        logout_user()
        flash("ログアウトしました。", "info")
    return redirect(url_for("auth.login"))
