"""The `xmonbridge` console script: init, create-user, serve, notify, check, heartbeat, backup,
restore, export, import (plus Flask's own commands)."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from flask_migrate import upgrade
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.datastructures import MultiDict

from . import approval, backup, config_export, create_app, keys, readiness
# Imported for its approval kind too: 承認待ち must know 「設定の取り込み」 in every process.
from . import config_import
from .auth import throttle
from .config import ConfigError
from .extensions import db
from .models import User
from .users import phone_audit, rules
from .users.forms import UserForm


@click.command("init")
@click.option(
    "--new-fernet-key",
    is_flag=True,
    help="Make a new fernet.key although the database holds AUTH TOKENs encrypted with the lost one; "
    "they must then be entered again.",
)
@with_appcontext
def init_command(new_fernet_key: bool) -> None:
    """Create the instance folder, generate keys (mode 0600) and apply migrations; idempotent."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    orphaned = readiness.check_init(app, new_fernet_key)
    created: list[Path] = []
    database = readiness.sqlite_file(app)
    with _undone_on_failure(app, created):
        keys.ensure(app, created)
        if database is not None and not database.exists():
            # SQLite makes the file and its journals; a failed init removes them all.
            created += [database.with_name(database.name + end) for end in ("", "-journal", "-wal", "-shm")]
        upgrade(directory=app.extensions["migrate"].directory)
        db.engine.dispose()
    for path in created:
        if path.name in (keys.SECRET_KEY_FILE, keys.FERNET_KEY_FILE):
            click.echo(f"created {path}")
    if orphaned:
        click.echo(f"new fernet.key: {orphaned.reentry_notice()}.")
    click.echo(f"xmonbridge instance ready in {app.instance_path}")


@contextmanager
def _undone_on_failure(app: Flask, created: list[Path]) -> Iterator[None]:
    """Remove what a failed init created (newest first) and report the failure in one line."""
    try:
        yield
    except BaseException as exc:
        db.engine.dispose()
        for path in reversed(created):
            with suppress(OSError):
                if path.is_dir():
                    path.rmdir()
                else:
                    path.unlink()
        if isinstance(exc, OSError):
            raise readiness.NotReady(f"cannot create {exc.filename or 'the instance'}: {exc.strerror}.") from None
        if isinstance(exc, SQLAlchemyError):
            raise readiness.NotReady(readiness.unusable(app, exc)) from None
        raise


@click.command("create-user")
@click.argument("login")
@click.option("--password", help="Password; generated and printed when omitted.")
@click.option("--name", default="", help="Display name.")
@click.option("--admin", is_flag=True, help="Grant 管理者.")
@click.option("--approver", is_flag=True, help="Grant 承認権限.")
@click.option("--phone", "phone_number", help="Phone number with country code, e.g. +81-90-0123-0001.")
@click.option("--no-login", is_flag=True, help="A notification target who cannot log in.")
@click.option("--if-missing", is_flag=True, help="Do nothing (exit 0) when LOGIN exists.")
@readiness.ready
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
    phone_audit.record(user, None, None)
    db.session.commit()
    click.echo(f"created user {login}" + (" (admin)" if admin else "") + (" (approver)" if approver else ""))
    if generated:
        click.echo(f"password: {generated}")


@click.command("unlock")
@click.argument("login")
@readiness.ready
def unlock_command(login: str) -> None:
    """Forget every failed login and lock of LOGIN, from every client address."""
    pairs = throttle.unlock(login)
    db.session.commit()
    if pairs:
        click.echo(f"unlocked {login} (failed logins from {pairs} address{'es' if pairs > 1 else ''} forgotten)")
    else:
        click.echo(f"{login} has no failed logins; nothing to unlock")


def worker_timeout(app: Flask) -> int:
    """Seconds gunicorn lets a request run: a test call whose answer is lost waits for Twilio
    twice (the create, then the look-up), and must not be killed halfway through."""
    cfg = app.config
    return max(30, int(2 * (cfg["TWILIO_CONNECT_TIMEOUT"] + cfg["TWILIO_READ_TIMEOUT"])) + 15)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
def serve_command(host: str, port: int, workers: int) -> None:
    """Serve xmonbridge with gunicorn in this process."""
    from gunicorn.app.base import BaseApplication

    # A fresh app: FlaskGroup keeps an app context of the one it loaded pushed while the
    # command runs, and gunicorn's forked workers would share its flask.g between requests.
    app = _create_app()
    readiness.require(app)

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", "-")
            self.cfg.set("timeout", worker_timeout(app))
            # gunicorn's control socket would be one path shared by every server of the user.
            self.cfg.set("control_socket_disable", True)
            # gunicorn believes X-Forwarded-Proto from 127.0.0.1 by default (where the nginx of
            # deploy/ runs); only ProxyFix, within PROXY_FIX_X_FOR hops, may (proxy.py).
            self.cfg.set("forwarded_allow_ips", "")
            # The access log must not hold the secret part of status callback URLs.
            self.cfg.set("logger_class", "xmonbridge.access_log.RedactingLogger")
            # Every worker runs a dispatcher thread; the lease lets one of them lead.
            self.cfg.set("post_worker_init", lambda _worker: _start_threads(app))
            self.cfg.set("worker_exit", lambda _server, _worker: _stop_threads())

        def load(self) -> Flask:
            return app

    click.echo(f"xmonbridge on http://{host}:{port} (TWILIO_MODE={app.config['TWILIO_MODE']})")
    Server().run()


def _start_threads(app: Flask) -> None:
    """Start a worker's dispatcher and, apart from it, the heartbeat's watchdog."""
    from . import watchdog
    from .dispatch import runner as dispatch_runner

    dispatch_runner.start(app)
    watchdog.start(app)


def _stop_threads() -> None:
    from . import watchdog
    from .dispatch import runner as dispatch_runner

    watchdog.stop()
    dispatch_runner.stop()


@click.command("heartbeat")
@readiness.ready
def heartbeat_command() -> None:
    """Check once whether the dispatcher or Twilio is down and text the ハートビート通知 user (for cron or a timer)."""
    from . import heartbeat

    result = heartbeat.check()
    click.echo(result.summary())


@click.command(
    "notify",
    add_help_option=False,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def notify_command(args: tuple[str, ...]) -> None:
    """Send one Nagios notification to xmonbridge's alert API (see `xmonbridge notify --help`)."""
    # The console script runs `notify` from xmonbridge/entry.py without loading the app; this
    # entry only lists it in --help and serves `flask --app xmonbridge notify`.
    from . import notify_command as light

    raise SystemExit(light.main(list(args)))


@click.command(
    "check",
    add_help_option=False,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def check_command(args: tuple[str, ...]) -> None:
    """Nagios plugin: check xmonbridge through GET /healthz (see `xmonbridge check --help`)."""
    # Like notify: the console script runs it from xmonbridge/entry.py without loading the app.
    from . import check_command as light

    raise SystemExit(light.main(list(args)))


class Refused(readiness.NotReady):
    """A command that refused its work and changed nothing: `xmonbridge: <reason>` on stderr, exit 1."""


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@readiness.ready
def backup_command(file: Path) -> None:
    """Write the running database (SQLite's online backup) and the instance keys to FILE.

    FILE is a new tar.gz archive of mode 0600 (an existing file is never overwritten; `-` is
    refused: the archive is not written to standard output); the service keeps running. With PostgreSQL only the keys are archived: use pg_dump beside it.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        made = backup.backup(app, file)
    except backup.BackupError as exc:
        raise Refused(str(exc)) from None
    for path in made.cleared:
        click.echo(f"removed {path}, left by an interrupted backup")
    click.echo(f"wrote {file} (mode 0600): {', '.join(made.files)}")
    if made.database == backup.POSTGRESQL:
        click.echo(backup.PG_DUMP_GUIDE)
    else:
        click.echo(f"database copied at schema {made.schema}; PRAGMA integrity_check: ok")


@click.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def restore_command(file: Path) -> None:
    """Put a backup archive made by `xmonbridge backup` back into an empty instance folder.

    A folder with anything in it, or an archive that fails its checks (checksums, PRAGMA
    integrity_check), is refused and nothing is changed.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        restored = backup.restore(app, file)
    except backup.BackupError as exc:
        raise Refused(str(exc)) from None
    for path in restored.cleared:
        click.echo(f"removed {path}, left by an interrupted restore")
    click.echo(f"restored {', '.join(restored.files)} into {restored.folder} (backup of {restored.created_at})")
    if restored.database == backup.POSTGRESQL:
        click.echo("This archive holds the keys only: load the database with pg_restore from the pg_dump made beside it.")
    elif restored.needs_migration:
        click.echo(f"PRAGMA integrity_check: ok; schema {restored.schema} is older than this version's: run `xmonbridge init` before `xmonbridge serve`.")
    else:
        click.echo("PRAGMA integrity_check: ok; start it with `xmonbridge serve`.")


@click.command("export")
@click.option(
    "--with-secrets",
    is_flag=True,
    help="Include the AUTH TOKENs and X-MON 設定's 通知先のトークン in clear text (keep the file like a password).",
)
@click.argument("file")
@readiness.ready
def export_command(with_secrets: bool, file: str) -> None:
    """Write the configuration as JSON to FILE (a new file of mode 0600) or to standard output (-).

    Users without passwords, Twilio accounts without AUTH TOKENs unless --with-secrets,
    X-MON 設定, the simple-call, SMS and button-call settings with their recipients, the
    message templates and the replacement lists; `xmonbridge import` reads it.
    """
    try:
        document = config_export.export(with_secrets)
        text = config_export.dumps(document)
        if file == "-":
            click.echo(text, nl=False)
            return
        config_export.write_new(Path(file), text)
    except config_export.Refused as exc:
        raise Refused(str(exc)) from None
    tokens = "with" if with_secrets else "without"
    click.echo(f"wrote {file} (mode 0600): {_counts(document)}; Twilio accounts {tokens} their AUTH TOKEN")


def _counts(document: dict[str, Any]) -> str:
    """How many of each kind a configuration holds, e.g. "3 users, 1 Twilio account, …"."""
    kinds = (
        ("users", "user"),
        ("twilio_accounts", "Twilio account"),
        ("simple_call_settings", "simple-call setting"),
        ("sms_settings", "SMS setting"),
        ("button_call_settings", "button-call setting"),
        ("message_templates", "message template"),
    )
    parts = [f"{len(document[key])} {noun}{'' if len(document[key]) == 1 else 's'}" for key, noun in kinds]
    lists = [scope for scope, content in document["replacement_lists"].items() if content]
    parts.append(f"replacement lists: {', '.join(lists) or 'none'}")
    return ", ".join(parts)


@click.command("import")
@click.argument("file")
@click.option("--by", "login", required=True, help="LOGIN of the administrator recorded as requesting the import.")
@readiness.ready
def import_command(file: str, login: str) -> None:
    """Check a configuration export (FILE, or - for standard input) and record it for approval.

    It becomes one 「設定の取り込み」 in 承認待ち; a user with 承認権限 approves it there,
    which applies it all at once. A file that is not an untouched export of this format, or
    whose values the screens' forms would refuse, is refused and nothing changes.
    """
    by = db.session.scalar(select(User).where(User.login == login))
    if by is None or not by.is_admin or by.login_disabled:
        raise Refused(f"--by {login}: name an administrator who may log in (create one with `xmonbridge create-user --admin`).")
    source = "standard input" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Refused(f"cannot read {source}: {getattr(exc, 'strerror', None) or exc}.") from None
    try:
        document = config_export.read(text)
        change = config_import.request(document, by, "標準入力" if file == "-" else Path(file).name)
    except (config_export.Refused, approval.ApprovalError) as exc:
        db.session.rollback()
        problems = exc.problems if isinstance(exc, config_export.Refused) else [str(exc)]
        if len(problems) == 1:
            raise Refused(f"{source} cannot be imported; nothing was changed: {problems[0]}") from None
        raise Refused("\n  ".join([f"{source} cannot be imported; nothing was changed:", *problems])) from None
    db.session.commit()
    click.echo(f"recorded {config_import.LABEL}「{change.target_name}」 (#{change.id}) for approval: {_counts(document)}")
    click.echo("A user with 承認権限 approves it in Twilio 連携設定 → 承認待ち; then it applies at once.")
    for line in config_import.after_approval(change.data):
        click.echo(line)


def init_app(app: Flask) -> None:
    """Register the commands on the app (and so on `flask --app xmonbridge`)."""
    commands = (init_command, create_user_command, unlock_command, serve_command, notify_command, check_command)
    for command in (*commands, heartbeat_command, backup_command, restore_command, export_command, import_command):
        app.cli.add_command(command)


def _create_app(*_args: Any) -> Flask:
    # FlaskGroup prints a traceback for any other exception while loading the app.
    try:
        return create_app()
    except ConfigError as exc:
        raise readiness.NotReady(str(exc)) from None


main = FlaskGroup(create_app=_create_app, add_default_commands=True, help="xmonbridge command line.")
