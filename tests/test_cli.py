"""The `xmonbridge` console script, run as a user would: init, create-user, serve."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

XMONBRIDGE = str(Path(sys.executable).parent / "xmonbridge")


def _run(instance: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XMONBRIDGE_INSTANCE": str(instance), "TWILIO_MODE": "simulate"}
    env.pop("DATABASE_URL", None)
    return subprocess.run([XMONBRIDGE, *args], env=env, capture_output=True, text=True, check=check, timeout=60)


def _query(instance: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(instance / "xmonbridge.sqlite")) as conn:
        return conn.execute(sql).fetchall()


def _fingerprint(folder: Path) -> dict[str, tuple[int, str]]:
    result = {}
    for path in sorted(folder.iterdir()):
        if path.name.endswith(("-wal", "-shm")):
            continue
        result[path.name] = (path.stat().st_mode & 0o777, hashlib.sha256(path.read_bytes()).hexdigest())
    return result


def test_init_is_idempotent_and_keys_are_private(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    first = _run(instance, "init")
    assert "created" in first.stdout
    assert (instance / "secret_key").stat().st_mode & 0o777 == 0o600
    assert (instance / "fernet.key").stat().st_mode & 0o777 == 0o600
    tables = {row[0] for row in _query(instance, "select name from sqlite_master where type='table'")}
    assert {"users", "twilio_accounts", "pending_changes", "xmon_settings", "alembic_version"} <= tables
    # The migrations create exactly what the models describe.
    assert "No new upgrade operations detected." in _run(instance, "db", "check").stdout
    before = _fingerprint(instance)
    second = _run(instance, "init")
    assert "created" not in second.stdout
    assert _fingerprint(instance) == before


def test_create_user_and_refuse_duplicates(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    _run(instance, "init")
    out = _run(instance, "create-user", "admin", "--admin", "--approver", "--phone", "+81-90-0123-0001").stdout
    assert "created user admin (admin) (approver)" in out
    assert "password: " in out  # generated and printed once
    [row] = _query(instance, "select phone, is_admin, is_approver, password_hash from users where login='admin'")
    assert row[:3] == ("+819001230001", 1, 1) and row[3].startswith(("scrypt:", "pbkdf2:"))
    again = _run(instance, "create-user", "admin", "--password", "x" * 10, check=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    assert _run(instance, "create-user", "admin", "--if-missing").returncode == 0
    bad = _run(instance, "create-user", "sato", "--no-login", "--phone", "090-0123-0001", check=False)
    assert bad.returncode != 0 and "国番号" in bad.stderr
    # The same rules as the ユーザ管理 form.
    for args, message in [
        (("bad name!", "--password", "long-enough-1"), "ログイン名は半角英数字と _ . @ - で入力してください。"),
        (("sato", "--password", "short"), "パスワードは8文字以上128文字以内で入力してください。"),
        (("sato", "--password", "long-enough-1", "--approver"), "承認権限は管理者にのみ付与できます。"),
    ]:
        refused = _run(instance, "create-user", *args, check=False)
        assert refused.returncode != 0 and message in refused.stderr, refused.stderr
    assert [row[0] for row in _query(instance, "select login from users")] == ["admin"]


def test_serve_refuses_to_start_before_init(tmp_path: Path) -> None:
    result = _run(tmp_path / "empty", "serve", "--port", "1", check=False)
    assert result.returncode != 0
    assert "xmonbridge init" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_on_the_given_port(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    _run(instance, "init")
    port = _free_port()
    env = {**os.environ, "XMONBRIDGE_INSTANCE": str(instance)}
    proc = subprocess.Popen(
        [XMONBRIDGE, "serve", "--port", str(port), "--workers", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as response:
                    page = response.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("server did not start")
                time.sleep(0.2)
        assert "ログイン" in page and "シミュレーションモード" in page
        assert "cdn" not in page.lower()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/bootstrap/static/css/bootstrap.min.css") as css:
            assert css.status == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_serve_refuses_an_outdated_schema(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    _run(instance, "init")
    _run(instance, "db", "downgrade", "0001")
    result = _run(instance, "serve", "--port", "1", check=False)
    assert result.returncode != 0
    assert "run `xmonbridge init` to apply the migrations" in result.stderr
    _run(instance, "init")  # brings it back to the newest schema
    assert "No new upgrade operations detected." in _run(instance, "db", "check").stdout
