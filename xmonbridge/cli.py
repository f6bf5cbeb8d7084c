"""The `xmonbridge` console script: init, create-user, serve (plus Flask's own commands)."""

from __future__ import annotations

import secrets
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from flask_migrate import upgrade
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from . import create_app, keys, readiness
from .auth import throttle
from .extensions import db
from .models import User
from .users import rules
from .users.forms import UserForm


@click.command("init")
@with_appcontext
def init_command() -> None:
    """Create the instance folder, generate keys (mode 0600) and apply migrations; idempotent."""
    created = keys.ensure(current_app)
    upgrade(directory=current_app.extensions["migrate"].directory)
    for path in created:
        click.echo(f"created {path}")
    click.echo(f"xmonbridge instance ready in {current_app.instance_path}")


@click.command("create-user")
@click.argument("login")
@click.option("--password", help="Password; generated and printed when omitted.")
@click.option("--name", default="", help="Display name.")
@click.option("--admin", is_flag=True, help="Grant 管理者.")
@click.option("--approver", is_flag=True, help="Grant 承認権限.")
@click.option("--phone", "phone_number", help="Phone number with country code, e.g. +81-90-0123-0001.")
@click.option("--no-login", is_flag=True, help="A notification target who cannot log in.")
@click.option("--if-missing", is_flag=True, help="Do nothing (exit 0) when LOGIN exists.")
@with_appcontext
def create_user_command(
    login: str,
    password: str | None,
    name: str,
    admin: bool,
    approver: bool,
    phone_number: str | None,
    no_login: bool,
    if_missing: bool,
) -> None:
    """Create a user without prompting, for scripts and the first administrator."""
    if db.session.scalar(select(User).where(User.login == login)) is not None:
        if if_missing:
            click.echo(f"user {login} already exists; nothing changed")
            return
        raise click.ClickException(f"user {login} already exists")
    generated = None
    if password is None and not no_login:
        password = generated = secrets.token_urlsafe(12)
    values = {"login": login, "name": name, "password": password or "", "phone": phone_number or ""}
    values.update({flag: "y" for flag, on in (("login_disabled", no_login), ("is_admin", admin), ("is_approver", approver)) if on})
    # The web form's own validation, so the command line cannot store what the screen refuses.
    with current_app.test_request_context(method="POST"):
        form = UserForm(formdata=MultiDict(values), meta={"csrf": False})
        ok = form.validate()
        # The command line acts with every right; only the role rules apply.
        problems = rules.save_problems(None, form, User(is_approver=True)) if ok else []
        errors = [f"{field.label.text}: {message}" for field, message in problems]
        errors += [f"{form[name].label.text}: {message}" for name, messages in form.errors.items() for message in messages]
        if errors:
            raise click.ClickException("\n".join(errors))
        user = User()
        form.save_to(user)
    db.session.add(user)
    db.session.commit()
    click.echo(f"created user {login}" + (" (admin)" if admin else "") + (" (approver)" if approver else ""))
    if generated:
        click.echo(f"password: {generated}")


@click.command("unlock")
@click.argument("login")
@with_appcontext
def unlock_command(login: str) -> None:
    """Forget every failed login and lock of LOGIN, from every client address."""
    pairs = throttle.unlock(login)
    db.session.commit()
    if pairs:
        click.echo(f"unlocked {login} (failed logins from {pairs} address{'es' if pairs > 1 else ''} forgotten)")
    else:
        click.echo(f"{login} has no failed logins; nothing to unlock")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
def serve_command(host: str, port: int, workers: int) -> None:
    """Serve xmonbridge with gunicorn in this process."""
    from gunicorn.app.base import BaseApplication

    app = create_app()
    readiness.require(app)

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", "-")
            # gunicorn's control socket would be one path shared by every server of the user.
            self.cfg.set("control_socket_disable", True)

        def load(self) -> Flask:
            return app

    click.echo(f"xmonbridge on http://{host}:{port} (TWILIO_MODE={app.config['TWILIO_MODE']})")
    Server().run()


def init_app(app: Flask) -> None:
    """Register the commands on the app (and so on `flask --app xmonbridge`)."""
    for command in (init_command, create_user_command, unlock_command, serve_command):
        app.cli.add_command(command)


def _create_app(*_args: Any) -> Flask:
    return create_app()


main = FlaskGroup(create_app=_create_app, add_default_commands=True, help="xmonbridge command line.")
