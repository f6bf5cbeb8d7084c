"""Start-up errors, through the real console script and gunicorn: one line, nothing left behind."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.test_cli import XMONBRIDGE, _run

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
DATABASE = "xmonbridge.sqlite"
RESTORE = "restore it from a backup, or move it away and run `xmonbridge init`"


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One instance made by `xmonbridge init`; tests work on copies of it."""
    instance = tmp_path_factory.mktemp("initialised") / "instance"
    _run(instance, "init")
    return instance


@pytest.fixture
def instance(initialised: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(initialised, tmp_path / "instance"))


def _listing(folder: Path) -> dict[str, tuple[int, str]]:
    """Every path under folder, with its mode and content hash (journal files included)."""
    return {
        str(path.relative_to(folder)): (
            path.stat().st_mode,
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "",
        )
        for path in sorted(folder.rglob("*"))
    }


def _assert_refused(result: subprocess.CompletedProcess[str], *hints: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xmonbridge: "), result.stderr
    for hint in hints:
        assert hint in lines[0]


def _corrupt(instance: Path) -> None:
    (instance / DATABASE).write_bytes(os.urandom(64 * 1024))


def _truncate(instance: Path) -> None:
    data = (instance / DATABASE).read_bytes()
    (instance / DATABASE).write_bytes(data[: len(data) // 2])


def _make_folder(instance: Path) -> None:
    (instance / DATABASE).unlink()
    (instance / DATABASE).mkdir()


def _drop_fernet_key(instance: Path) -> None:
    (instance / "fernet.key").unlink()


@pytest.mark.parametrize(
    ("damage", "commands", "file", "hint"),
    [
        (_corrupt, ["serve", "create-user", "init"], DATABASE, f"is not a database (corrupt or truncated): {RESTORE}"),
        (_truncate, ["serve", "init"], DATABASE, f"is not a database (corrupt or truncated): {RESTORE}"),
        (_make_folder, ["serve"], DATABASE, "is a folder, not a database file: move it away and run `xmonbridge init`"),
        (_drop_fernet_key, ["serve", "create-user"], "fernet.key", "is missing: run `xmonbridge init` to create it"),
    ],
    ids=["corrupt", "truncated", "database-is-a-folder", "no-fernet-key"],
)
def test_it_refuses_a_damaged_instance_in_one_line(
    instance: Path, damage: Callable[[Path], None], commands: list[str], file: str, hint: str
) -> None:
    damage(instance)
    before = _listing(instance)
    for command in commands:
        args = {"serve": ("serve", "--port", "1"), "create-user": ("create-user", "sato"), "init": ("init",)}[command]
        _assert_refused(_run(instance, *args, check=False), f"{instance / file} {hint}")
        assert _listing(instance) == before, command


def test_it_refuses_every_command_before_init(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    for args in (("serve", "--port", "1"), ("create-user", "admin")):
        _assert_refused(_run(instance, *args, check=False), f"{instance} does not exist: run `xmonbridge init` first")
    assert list(tmp_path.iterdir()) == []  # no instance folder, no empty database


def test_it_refuses_a_read_only_instance_folder(initialised: Path) -> None:
    """chmod 0500 on the instance folder; root ignores modes, so the commands run as nobody then."""
    as_root = os.geteuid() == 0
    if as_root and not shutil.which("setpriv"):
        pytest.skip("setpriv is needed to drop root")
    if as_root:
        probe = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "test", "-r", XMONBRIDGE],
            capture_output=True,
            timeout=30,
        )
        if probe.returncode != 0:
            # E.g. a clone inside a private `mktemp -d` folder: nobody cannot reach the virtualenv.
            pytest.skip(f"user nobody cannot read {XMONBRIDGE} (a folder above it is private)")
    with tempfile.TemporaryDirectory() as scratch:
        os.chmod(scratch, 0o711)  # pytest's tmp_path is closed to other users
        instance = Path(shutil.copytree(initialised, Path(scratch) / "instance"))
        if as_root:
            for path in (instance, *instance.iterdir()):
                os.chown(path, 65534, 65534)
        os.chmod(instance, 0o500)
        before = _listing(instance)
        env = {**os.environ, "XMONBRIDGE_INSTANCE": str(instance), "TWILIO_MODE": "simulate"}
        env.pop("DATABASE_URL", None)
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_root else []
        for args in (("serve", "--port", "1"), ("create-user", "sato"), ("init",)):
            result = subprocess.run([*drop, XMONBRIDGE, *args], env=env, capture_output=True, text=True, timeout=60)
            _assert_refused(result, f"{instance} is not writable by user ", "give that user write access")
        assert _listing(instance) == before
        os.chmod(instance, 0o700)


def test_init_creates_nothing_when_it_fails(tmp_path: Path) -> None:
    env = {**os.environ, "XMONBRIDGE_INSTANCE": str(tmp_path / "new" / "instance"), "TWILIO_MODE": "simulate"}
    # A database that cannot be created: init has already made the folder and keys by then.
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'missing' / DATABASE}"
    result = subprocess.run([XMONBRIDGE, "init"], env=env, capture_output=True, text=True, timeout=60)
    _assert_refused(result, f"{tmp_path / 'missing' / DATABASE} cannot be used (unable to open database file)")
    assert list(tmp_path.iterdir()) == []  # neither the instance folder (and its parent) nor a key


def test_gunicorn_stops_with_one_line(instance: Path) -> None:
    _corrupt(instance)
    env = {**os.environ, "XMONBRIDGE_INSTANCE": str(instance), "TWILIO_MODE": "simulate"}
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [str(BIN / "gunicorn"), "--workers", "1", "--bind", "127.0.0.1:0", "--no-control-socket", "wsgi:app"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 4  # gunicorn's "App failed to load": it halts instead of respawning
    assert "Traceback" not in result.stdout + result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("xmonbridge: ")]
    assert ours == [f"xmonbridge: {instance / DATABASE} is not a database (corrupt or truncated): {RESTORE}."]


def _store_auth_token(instance: Path) -> None:
    """An approved account and a pending one, their AUTH TOKENs encrypted with the instance's key."""
    fernet = Fernet((instance / "fernet.key").read_text().strip())
    token = fernet.encrypt(b"auth-token").decode()
    with closing(sqlite3.connect(instance / DATABASE)) as conn:
        conn.execute(
            "INSERT INTO twilio_accounts (name, account_sid, auth_token_encrypted, created_at, updated_at)"
            " VALUES ('本番', ?, ?, datetime(), datetime())",
            ("AC" + "0" * 32, token),
        )
        conn.execute(
            "INSERT INTO pending_changes (kind, action, target_name, payload, status, requested_at)"
            " VALUES ('twilio_account', 'create', '予備', ?, 'pending', datetime())",
            (f'{{"auth_token_encrypted": "{token}", "name": "予備"}}',),
        )
        conn.commit()


def test_init_keeps_a_lost_fernet_key_lost_unless_told(instance: Path) -> None:
    _store_auth_token(instance)
    _drop_fernet_key(instance)
    before = _listing(instance)
    for args in (("init",), ("serve", "--port", "1")):
        _assert_refused(
            _run(instance, *args, check=False),
            f"{instance / 'fernet.key'} is missing and the database holds the AUTH TOKEN of 1 Twilio account (本番)",
            "`xmonbridge init --new-fernet-key` makes a new key, but stored Twilio AUTH TOKENs can no longer be "
            "decrypted and must be entered again.",
        )
    assert _listing(instance) == before

    out = _run(instance, "init", "--new-fernet-key").stdout
    assert f"created {instance / 'fernet.key'}" in out
    assert (
        "new fernet.key: enter the AUTH TOKEN of 1 Twilio account (本番) again in Twilio アカウント情報; "
        "reject 1 pending change carrying an AUTH TOKEN in 承認待ち and request it again." in out
    )
    assert (instance / "fernet.key").stat().st_mode & 0o777 == 0o600
    # A key file is never replaced, with or without the option.
    _assert_refused(_run(instance, "init", "--new-fernet-key", check=False), "exists and is never replaced")


def test_init_names_the_acknowledgement_token_a_new_fernet_key_loses(instance: Path) -> None:
    fernet = Fernet((instance / "fernet.key").read_text().strip())
    with closing(sqlite3.connect(instance / DATABASE)) as conn:
        conn.execute(
            "INSERT INTO xmon_settings (id, voice, ack_mode, ack_http_url, ack_http_token_encrypted, updated_at)"
            " VALUES (1, 'Polly.Mizuki', 'http', 'https://m.example/acks', ?, datetime())",
            (fernet.encrypt(b"monitor-token").decode(),),
        )
        conn.commit()
    _drop_fernet_key(instance)
    _assert_refused(
        _run(instance, "init", check=False),
        f"{instance / 'fernet.key'} is missing and the database holds the 通知先のトークン of X-MON 設定",
    )
    out = _run(instance, "init", "--new-fernet-key").stdout
    assert "new fernet.key: enter 通知先のトークン again in X-MON 設定." in out


def test_init_makes_a_missing_fernet_key_when_nothing_is_encrypted(instance: Path) -> None:
    _drop_fernet_key(instance)
    assert f"created {instance / 'fernet.key'}" in _run(instance, "init").stdout
    assert "created user sato" in _run(instance, "create-user", "sato", "--no-login").stdout


@pytest.mark.parametrize("value", ["abc", "true", "1.5", "-1"])
def test_a_bad_number_in_the_environment_is_one_line(instance: Path, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _listing(instance)
    monkeypatch.setenv("XMONBRIDGE_PROXY_FIX_X_FOR", value)
    _assert_refused(_run(instance, "serve", "--port", "1", check=False), "XMONBRIDGE_PROXY_FIX_X_FOR is", "whole number")
    assert _listing(instance) == before


def test_a_bad_number_refuses_even_login_settings() -> None:
    from xmonbridge.config import ConfigError, Defaults, check_numbers

    settings = {key: value for key, value in vars(Defaults).items() if not key.startswith("_")}
    check_numbers(settings)
    with pytest.raises(ConfigError, match="XMONBRIDGE_LOGIN_MAX_FAILURES is 'abc'"):
        check_numbers({**settings, "LOGIN_MAX_FAILURES": "abc"})
    with pytest.raises(ConfigError, match="from 1 to"):
        check_numbers({**settings, "LOGIN_MAX_FAILURES": 0})
    with pytest.raises(ConfigError, match="XMONBRIDGE_LOGIN_MAX_FAILURES is 99999999999999999999999"):
        check_numbers({**settings, "LOGIN_MAX_FAILURES": 99999999999999999999999})
    check_numbers({**settings, "TWILIO_READ_TIMEOUT": 2})  # an int where a float is expected is fine
