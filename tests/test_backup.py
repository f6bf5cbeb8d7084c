"""`xmonbridge backup` and `xmonbridge restore`, run as an operator runs them.

The backup is taken from a real `xmonbridge serve` while alerts storm in through the API and
the dispatcher works them: the restored copy must pass PRAGMA integrity_check, hold every
alert answered 202 before the backup began, and be a usable instance with its keys.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.factories import AUTH_TOKEN, make_recipient, make_simple_call_setting, make_sms_setting, make_twilio_account
from tests.instance_cli import Instance, initialised
from tests.real_server import RealServer, wait_for
from xmonbridge import backup

PHONES = ["+819001230001", "+819001230002", "+819001230003"]
STORM_THREADS = 3


def _query(database: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        return connection.execute(sql).fetchall()


def _fingerprint(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under folder with its mode and SHA-256."""
    return {
        str(path.relative_to(folder)): (path.stat().st_mode & 0o777, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _storm(server: RealServer, token: str, ids: dict[str, int], worker: int, stop: threading.Event, answered: list[tuple[float, int]], failures: list[Any]) -> None:
    """Post distinct alerts until stopped; record when each 202 arrived and the alert id it named."""
    n = 0
    while not stop.is_set():
        kind = "simple_call" if n % 2 == 0 else "sms"
        fields = {
            "kind": kind,
            "setting_id": ids[kind],
            "type": "PROBLEM",
            "host": f"host-{worker}-{n}",
            "service": "HTTP",
            "state": "CRITICAL",
            "output": "Connection refused",
            "problem_id": str(100000 * (worker + 1) + n),
        }
        try:
            status, body = server.post_alert(token, fields)
        except OSError as exc:
            failures.append(repr(exc))
            continue
        if status == 202:
            answered.append((time.monotonic(), int(body["id"])))
        else:
            failures.append((status, body))
        n += 1


def test_backup_while_the_dispatcher_writes_restores_every_acknowledged_alert(tmp_path: Path) -> None:
    server = RealServer(tmp_path / "live", mode="simulate", DISPATCH_POLL_SECONDS=0.2)
    with server.app_context():
        users = [make_recipient(login=f"u{i}", name=f"担当者{i}", phone=p) for i, p in enumerate(PHONES)]
        account = make_twilio_account(cps=100)
        ids = {
            "simple_call": make_simple_call_setting(account, users, name="電話連絡").id,
            "sms": make_sms_setting(account, users, name="SMS連絡").id,
        }
    token = server.make_token()
    archive = tmp_path / "backup.tar.gz"
    server.start()
    answered: list[tuple[float, int]] = []
    failures: list[Any] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_storm, args=(server, token, ids, worker, stop, answered, failures))
        for worker in range(STORM_THREADS)
    ]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: len(answered) >= 60, 60, "the storm to get going")
        began = time.monotonic()
        out = server.cli("backup", str(archive))
        ended = time.monotonic()
        # The service went on answering while and after the backup ran.
        wait_for(lambda: any(at > ended for at, _ in list(answered)), 30, "alerts answered after the backup")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        server.stop()
    assert not failures, failures[:5]
    assert "PRAGMA integrity_check: ok" in out
    assert archive.stat().st_mode & 0o777 == 0o600
    before = {alert_id for at, alert_id in answered if at < began}
    assert len(before) >= 60

    restored = Instance(tmp_path / "restored")
    out = restored.ok("restore", str(archive))
    assert "restored fernet.key, secret_key, xmonbridge.sqlite" in out
    assert _query(restored.database, "PRAGMA integrity_check") == [("ok",)]
    present = {row[0] for row in _query(restored.database, "SELECT id FROM alerts")}
    assert before <= present, f"{len(before - present)} alerts answered 202 before the backup are missing"
    # One committed state: every alert in the copy has its notification and all three deliveries.
    counts = _query(
        restored.database,
        "SELECT a.id, COUNT(d.id) FROM alerts a JOIN notifications n ON n.alert_id = a.id "
        "JOIN deliveries d ON d.notification_id = n.id GROUP BY a.id",
    )
    assert len(counts) == len(present) and {count for _, count in counts} == {3}
    # The dispatcher was writing too: the copy holds calls and SMS it had already placed.
    assert _query(restored.database, "SELECT COUNT(*) FROM simulated_messages")[0][0] > 0
    # The keys came back private and are the ones the data needs: the AUTH TOKEN decrypts.
    for name in ("secret_key", "fernet.key", "xmonbridge.sqlite"):
        assert (restored.folder / name).stat().st_mode & 0o777 == 0o600
        if name != "xmonbridge.sqlite":
            assert (restored.folder / name).read_bytes() == (server.instance / name).read_bytes()
    assert restored.folder.stat().st_mode & 0o777 == 0o700
    exported = json.loads(restored.ok("export", "--with-secrets", "-"))
    assert [a["auth_token"] for a in exported["twilio_accounts"]] == [AUTH_TOKEN]


def test_the_archive_is_private_from_the_start_and_never_overwrites(tmp_path: Path, migrated_db: Path) -> None:
    instance = initialised(tmp_path / "instance", migrated_db)
    archive = tmp_path / "backup.tar.gz"
    # Even with a umask that would leave a new file world-readable.
    made = instance.run("backup", str(archive), umask=0)
    assert made.returncode == 0, made.stderr
    assert archive.stat().st_mode & 0o777 == 0o600
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["MANIFEST.json", "fernet.key", "secret_key", "xmonbridge.sqlite"]
        assert {member.mode for member in tar.getmembers()} == {0o600}
    before = archive.read_bytes()
    again = instance.invoke("backup", str(archive))
    assert again.exit_code == 1
    assert "exists: a backup never overwrites a file" in again.stderr
    assert archive.read_bytes() == before
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # no leftover copy


def test_restore_refuses_a_folder_that_is_not_empty_and_changes_nothing(tmp_path: Path, migrated_db: Path) -> None:
    source = initialised(tmp_path / "source", migrated_db)
    archive = tmp_path / "backup.tar.gz"
    source.ok("backup", str(archive))
    target = Instance(tmp_path / "target")
    target.folder.mkdir()
    (target.folder / "notes.txt").write_text("kept\n")
    before = _fingerprint(target.folder)
    refused = target.invoke("restore", str(archive))
    assert refused.exit_code == 1
    assert f"{target.folder} is not empty (notes.txt): restore only into an empty instance folder" in refused.stderr
    assert _fingerprint(target.folder) == before
    # An existing instance is refused the same way: a restore never replaces data.
    refused = source.invoke("restore", str(archive))
    assert refused.exit_code == 1 and "is not empty" in refused.stderr


def _repacked(archive: Path, dest: Path, change: Any) -> Path:
    """A copy of archive whose members pass through change(name, data) -> data | None (dropped)."""
    with tarfile.open(archive) as tar, tarfile.open(dest, "w:gz") as out:
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            assert handle is not None
            data = change(member.name, handle.read())
            if data is not None:
                member.size = len(data)
                out.addfile(member, io.BytesIO(data))
    return dest


def test_restore_refuses_an_archive_that_fails_its_checks_and_creates_nothing(tmp_path: Path, migrated_db: Path) -> None:
    source = initialised(tmp_path / "source", migrated_db)
    archive = tmp_path / "backup.tar.gz"
    source.ok("backup", str(archive))

    def flip_a_byte(name: str, data: bytes) -> bytes:
        if name != "xmonbridge.sqlite":
            return data
        return data[:5000] + bytes([data[5000] ^ 0xFF]) + data[5001:]

    def newer(name: str, data: bytes) -> bytes:
        if name != "MANIFEST.json":
            return data
        manifest = json.loads(data)
        manifest["version"] = 2
        return json.dumps(manifest).encode()

    (tmp_path / "notes.txt").write_text("not an archive\n")
    cases = {
        "damaged": (_repacked(archive, tmp_path / "damaged.tar.gz", flip_a_byte), "xmonbridge.sqlite does not match its checksum"),
        "foreign": (
            _repacked(archive, tmp_path / "foreign.tar.gz", lambda name, data: None if name == "MANIFEST.json" else data),
            "is not an xmonbridge backup (no MANIFEST.json",
        ),
        "newer": (_repacked(archive, tmp_path / "newer.tar.gz", newer), "is backup format version 2"),
        "not an archive": (tmp_path / "notes.txt", "is not an xmonbridge backup (not a tar.gz archive"),
        "missing": (tmp_path / "nothing.tar.gz", "nothing.tar.gz does not exist"),
    }
    target = Instance(tmp_path / "target")
    for case, (path, message) in cases.items():
        refused = target.invoke("restore", str(path))
        assert refused.exit_code == 1, case
        assert message in refused.stderr, (case, refused.stderr)
        assert not target.folder.exists(), case
    # The unchanged archive restores into the same place.
    target.ok("restore", str(archive))
    assert _query(target.database, "PRAGMA integrity_check") == [("ok",)]


def test_postgresql_backup_archives_the_keys_and_explains_pg_dump(tmp_path: Path, pg_migrated_url: str) -> None:
    source = Instance(tmp_path / "source", database_url=pg_migrated_url)
    source.ok("init")
    archive = tmp_path / "keys.tar.gz"
    out = source.ok("backup", str(archive))
    assert "this archive holds only the keys" in out and "pg_dump --format=custom" in out and "pg_restore" in out
    assert archive.stat().st_mode & 0o777 == 0o600
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["MANIFEST.json", "fernet.key", "secret_key"]
    # Restored as the keys of an instance on PostgreSQL; refused for a SQLite instance.
    sqlite_target = Instance(tmp_path / "sqlite-target")
    refused = sqlite_target.invoke("restore", str(archive))
    assert refused.exit_code == 1 and "was made from PostgreSQL and holds only the keys" in refused.stderr
    assert not sqlite_target.folder.exists()
    target = Instance(tmp_path / "target", database_url=pg_migrated_url)
    out = target.ok("restore", str(archive))
    assert "load the database with pg_restore" in out
    assert sorted(path.name for path in target.folder.iterdir()) == ["fernet.key", "secret_key"]
    for name in ("fernet.key", "secret_key"):
        assert (target.folder / name).read_bytes() == (source.folder / name).read_bytes()
        assert (target.folder / name).stat().st_mode & 0o777 == 0o600


# Runs `xmonbridge ARGS` with one function of xmonbridge.backup (or a module it uses) wrapped
# so that the process SIGKILLs itself before or after that call: a kill at a known point.
KILLED_AT = """
import os, signal, sys
from xmonbridge import backup, entry
where, when = sys.argv[1], sys.argv[2]
*path, name = where.split(".")
owner = backup
for part in path:
    owner = getattr(owner, part)
original = getattr(owner, name)
def killing(*args, **kwargs):
    if when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = original(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
    return result
setattr(owner, name, killing)
sys.argv = ["xmonbridge", *sys.argv[3:]]
entry.main()
"""


def _killed(instance: Instance, where: str, when: str, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", KILLED_AT, where, when, *args], env=instance.env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr)


def _private(folder: Path) -> None:
    """folder and everything in it are readable by their owner only."""
    assert folder.stat().st_mode & 0o777 == 0o700
    for path in folder.rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, path


@pytest.mark.parametrize(
    ("where", "when"),
    [("_copy_database", "after"), ("_add_bytes", "after"), ("_publish", "before")],
    ids=["database copied", "archive half written", "archive written"],
)
def test_a_killed_backup_leaves_nothing_under_the_name_and_the_retry_clears_up(
    tmp_path: Path, migrated_db: Path, where: str, when: str
) -> None:
    instance = initialised(tmp_path / "instance", migrated_db)
    backups = tmp_path / "backups"
    backups.mkdir()
    archive = backups / "backup.tar.gz"
    _killed(instance, where, when, "backup", str(archive))
    assert not archive.exists()
    left = list(backups.iterdir())
    assert [path.name[: len(backup.BACKUP_STAGING)] for path in left] == [backup.BACKUP_STAGING]
    _private(left[0])
    # The retry under the same name works and removes what the killed one left.
    out = instance.ok("backup", str(archive))
    assert f"removed {left[0]}, left by an interrupted backup" in out
    assert [path.name for path in backups.iterdir()] == ["backup.tar.gz"]
    assert archive.stat().st_mode & 0o777 == 0o600
    restored = Instance(tmp_path / "restored")
    assert "PRAGMA integrity_check: ok" in restored.ok("restore", str(archive))


def test_a_failed_backup_writes_nothing_and_leaves_a_running_backup_alone(
    tmp_path: Path, migrated_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = initialised(tmp_path / "instance", migrated_db)
    backups = tmp_path / "backups"
    backups.mkdir()
    # Another backup at work in the same folder: its staging folder is locked.
    running, lock = backup._staging(backups, backup.BACKUP_STAGING)
    try:
        archive = backups / "backup.tar.gz"
        calls = []

        def full(tar: tarfile.TarFile, name: str, data: bytes) -> None:
            calls.append(name)
            if len(calls) == 2:
                raise OSError(28, "No space left on device")
            original(tar, name, data)

        original = backup._add_bytes
        monkeypatch.setattr(backup, "_add_bytes", full)
        failed = instance.invoke("backup", str(archive))
        assert failed.exit_code == 1
        assert f"cannot write {archive}: No space left on device; nothing was written." in failed.stderr
        assert [path.name for path in backups.iterdir()] == [running.name]
        monkeypatch.setattr(backup, "_add_bytes", original)
        out = instance.ok("backup", str(archive), here=True)
        assert "interrupted" not in out
        assert sorted(path.name for path in backups.iterdir()) == sorted(["backup.tar.gz", running.name])
    finally:
        os.close(lock)


def test_backup_to_standard_output_is_refused(tmp_path: Path, migrated_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    instance = initialised(tmp_path / "instance", migrated_db)
    monkeypatch.chdir(tmp_path)
    refused = instance.invoke("backup", "-")
    assert refused.exit_code == 1
    assert "a backup is written to a file, not to standard output: name a new file" in refused.stderr
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize(
    ("where", "when"), [("_check_database", "after"), ("shutil.move", "after")], ids=["checked", "one file moved in"]
)
def test_a_killed_restore_is_cleared_by_the_next_one(tmp_path: Path, migrated_db: Path, where: str, when: str) -> None:
    source = initialised(tmp_path / "source", migrated_db)
    archive = tmp_path / "backup.tar.gz"
    source.ok("backup", str(archive))
    target = Instance(tmp_path / "target")
    _killed(target, where, when, "restore", str(archive))
    staging = [path for path in target.folder.iterdir() if path.name.startswith(".restore-")]
    assert len(staging) == 1
    _private(target.folder)
    # The service does not send the operator to `init`, which would make new keys.
    refused = target.run("serve")
    assert refused.returncode == 1
    assert "a restore into" in refused.stderr and "was interrupted: run `xmonbridge restore FILE` again" in refused.stderr
    # A folder changed since then is not touched: refused as not empty.
    (target.folder / "notes.txt").write_text("kept\n")
    before = _fingerprint(target.folder)
    refused = target.run("restore", str(archive))
    assert refused.returncode == 1 and "is not empty" in refused.stderr
    assert _fingerprint(target.folder) == before
    (target.folder / "notes.txt").unlink()
    out = target.ok("restore", str(archive))
    assert f"removed {staging[0]}, left by an interrupted restore" in out
    assert "restored fernet.key, secret_key, xmonbridge.sqlite" in out
    assert sorted(path.name for path in target.folder.iterdir()) == ["fernet.key", "secret_key", "xmonbridge.sqlite"]
    _private(target.folder)
    for name in ("secret_key", "fernet.key"):
        assert (target.folder / name).read_bytes() == (source.folder / name).read_bytes()
    assert _query(target.database, "PRAGMA integrity_check") == [("ok",)]
