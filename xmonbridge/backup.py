"""Backup and restore of an instance: its SQLite database and the keys it needs, in one archive.

`backup()` copies the running database with SQLite's online backup API and packs the copy
with `secret_key`, `fernet.key` and `config.py` (when there is one) into a tar.gz archive
of mode 0600 that never overwrites a file. Everything is written in a private, locked staging
folder beside the archive (`.xmonbridge-backup-*`, 0700) and the finished archive is linked to
its name only at the end, so an interrupted backup (even SIGKILL) leaves nothing under that
name; the next backup into the same folder removes a staging folder whose lock nobody holds. Connection.backup() copies every
page in one step, inside one read transaction: in WAL mode that does not block the writers
(the API and the dispatcher go on), and the copy holds exactly the transactions committed
when it began, so every alert answered 202 before the backup started is in it.

With PostgreSQL (`DATABASE_URL`) the archive holds the keys only: `pg_dump` makes the
database's consistent copy (see PG_DUMP_GUIDE).

`restore()` puts an archive back into an empty instance folder: it refuses a folder with
anything in it, checks the archive (its manifest, every file's SHA-256, the database's
`PRAGMA integrity_check` and schema) in a private, locked staging folder inside it
(`.restore-*`, 0700; the instance folder's parent, such as /var/lib, is often not writable by
the service's user), and only then moves the files into place, listing them first in the
staging folder; on any failure it removes what it made, so a refused restore changes nothing.
A restore that was killed leaves its staging folder (and perhaps some of the files it moved);
the next restore removes both, when they are unchanged, and says so.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from alembic.script import ScriptDirectory
from flask import Flask

from . import keys, readiness

FORMAT = "xmonbridge-backup"
VERSION = 1
MANIFEST = "MANIFEST.json"
DATABASE = "xmonbridge.sqlite"
CONFIG = "config.py"
SQLITE = "sqlite"
POSTGRESQL = "postgresql"
# The only names an archive may hold; anything else (a path, a link) is refused on restore.
MEMBERS = (DATABASE, keys.SECRET_KEY_FILE, keys.FERNET_KEY_FILE, CONFIG)
# How long the copy waits for a lock (a checkpoint in progress) before giving up.
BUSY_SECONDS = 30
CHUNK = 1 << 20
BACKUP_STAGING = ".xmonbridge-backup-"
RESTORE_STAGING = ".restore-"
# Held (flock) by the process working in a staging folder; a free lock means the work stopped.
LOCK = ".lock"
PARTIAL = "archive.partial"
# The files a restore is moving into place, with their digests: what a later restore may undo.
PLACED = "PLACED.json"
# A staging folder without a lock file is only stale once it is older than this (it may be
# in the instant between its creation and its lock's).
UNLOCKED_GRACE_SECONDS = 60
# A file system without hard links: the finished archive is renamed after a check instead.
NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK}

PG_DUMP_GUIDE = (
    "The database is PostgreSQL (DATABASE_URL): this archive holds only the keys and config.py. "
    "Dump the database beside it with `pg_dump --format=custom --file=xmonbridge.dump DBNAME` "
    "(a consistent snapshot; xmonbridge keeps running) and keep both files together. "
    "To restore: `xmonbridge restore` this archive into an empty instance folder, then "
    "`pg_restore --dbname=DBNAME xmonbridge.dump` into an empty database."
)


class BackupError(Exception):
    """A refused backup or restore; str() is one line naming the file and the fix."""


@dataclass
class Archive:
    """What one archive holds (its manifest)."""

    path: Path
    database: str
    files: list[str]
    # The database's Alembic revision; None for a PostgreSQL archive.
    schema: str | None = None
    created_at: str = ""
    # Leftovers of interrupted runs that this run removed (shown to the operator).
    cleared: list[str] = field(default_factory=list)


@dataclass
class Restored(Archive):
    """An archive put back, and whether `xmonbridge init` must migrate it to this version."""

    folder: Path = field(default_factory=Path)
    needs_migration: bool = False


def backup(app: Flask, dest: Path) -> Archive:
    """Write the instance's database copy and keys to dest (mode 0600); refuse an existing dest."""
    if str(dest) == "-":
        raise BackupError(
            "a backup is written to a file, not to standard output: name a new file, "
            "e.g. `xmonbridge backup /var/backups/xmonbridge/$(date +%F).tar.gz`."
        )
    database = readiness.sqlite_file(app)
    _refuse_existing(dest)
    try:
        cleared = _clear_stale(dest.parent, BACKUP_STAGING)
        # Beside the archive, not in /tmp: the copy is as large as the database, and the
        # finished archive is linked to its name on the same file system.
        work, lock = _staging(dest.parent, BACKUP_STAGING)
    except OSError as exc:
        raise BackupError(f"cannot write in {dest.parent}: {exc.strerror}.") from None
    try:
        partial = work / PARTIAL
        # 0600 from the first byte, since the archive holds the keys (the folder is 0700 too).
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            archive = _write(app, database, work, dest, out)
            out.flush()
            os.fsync(out.fileno())
        _publish(partial, dest)
    except OSError as exc:
        raise BackupError(f"cannot write {dest}: {exc.strerror}; nothing was written.") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.close(lock)
    archive.cleared = cleared
    return archive


def _refuse_existing(dest: Path) -> None:
    if dest.exists() or dest.is_symlink():
        raise BackupError(f"{dest} exists: a backup never overwrites a file; choose a new file name.")


def _publish(partial: Path, dest: Path) -> None:
    """Give the finished archive its name: a hard link, which fails rather than replace a file."""
    try:
        os.link(partial, dest)
    except FileExistsError:
        raise BackupError(f"{dest} exists: a backup never overwrites a file; choose a new file name.") from None
    except OSError as exc:
        if exc.errno not in NO_LINKS:
            raise
        _refuse_existing(dest)
        os.rename(partial, dest)
    _sync_folder(dest.parent)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _staging(parent: Path, prefix: str) -> tuple[Path, int]:
    """A new private (0700) folder in parent and the descriptor of its lock, held until closed."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        lock = os.open(work / LOCK, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return work, lock


def _stagings(parent: Path, prefix: str) -> list[Path]:
    """The staging folders in parent left by runs that are no longer working in them."""
    try:
        entries = sorted(parent.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [path for path in entries if path.name.startswith(prefix) and path.is_dir() and not path.is_symlink() and not _busy(path)]


def _busy(work: Path) -> bool:
    """True while a live process holds work's lock (or just made work and is about to take it)."""
    try:
        fd = os.open(work / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return time.time() - work.stat().st_mtime < UNLOCKED_GRACE_SECONDS
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _clear_stale(parent: Path, prefix: str) -> list[str]:
    """Remove the staging folders in parent that interrupted runs left; return their names."""
    cleared = []
    for work in _stagings(parent, prefix):
        shutil.rmtree(work)
        cleared.append(str(work))
    return cleared


def _write(app: Flask, database: Path | None, work: Path, dest: Path, out: IO[bytes]) -> Archive:
    """Copy the database into the staging folder work, then write the archive to out."""
    contents = _instance_files(app)
    schema = None
    copy = None
    if database is not None:
        copy = work / DATABASE
        schema = _copy_database(database, copy)
    files = {name: _digest_bytes(data) for name, data in contents.items()}
    if copy is not None:
        files[DATABASE] = _digest_file(copy)
    created_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created_at": created_at,
        "database": SQLITE if database is not None else POSTGRESQL,
        "schema": schema,
        "files": files,
    }
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
        if copy is not None:
            with copy.open("rb") as handle:
                tar.addfile(_member(DATABASE, copy.stat().st_size), handle)
        for name, data in contents.items():
            _add_bytes(tar, name, data)
    return Archive(dest, str(manifest["database"]), sorted(files), schema, created_at)


def _instance_files(app: Flask) -> dict[str, bytes]:
    """secret_key, fernet.key (from their files, else from config) and config.py if present."""
    contents: dict[str, bytes] = {}
    for name, path in keys.paths(app).items():
        try:
            contents[path.name] = path.read_bytes()
        except FileNotFoundError:
            if not app.config.get(name):
                raise BackupError(f"{path} is missing: restore it from an older backup first.") from None
            # A key set in config.py or the environment: archived as the file it would be.
            contents[path.name] = (str(app.config[name]) + "\n").encode()
        except OSError as exc:
            raise BackupError(f"cannot read {path}: {exc.strerror}.") from None
    config = Path(app.instance_path) / CONFIG
    if config.exists():
        try:
            contents[CONFIG] = config.read_bytes()
        except OSError as exc:
            raise BackupError(f"cannot read {config}: {exc.strerror}.") from None
    return contents


def _copy_database(source: Path, copy: Path) -> str | None:
    """Copy source with the online backup API, check the copy and return its schema revision.

    The copy is switched from WAL to a rollback journal, so it is one self-contained file
    (the app switches it back to WAL when it opens it).
    """
    # An empty file is an empty database: made first so the copy is 0600 whatever the umask.
    os.close(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        with closing(sqlite3.connect(source, timeout=BUSY_SECONDS)) as src, closing(sqlite3.connect(copy)) as dst:
            # pages=-1: every page in one step, so one read transaction, one committed state.
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode=DELETE")
            problems = _integrity(dst)
            schema = _schema(dst)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy {source}: {exc}.") from None
    if problems:
        raise BackupError(
            f"the copy of {source} fails PRAGMA integrity_check ({problems}): the database itself may be damaged; "
            "keep the last good backup."
        )
    return schema


def _integrity(connection: sqlite3.Connection) -> str:
    """'' when PRAGMA integrity_check says ok, else its first findings."""
    rows = [str(row[0]) for row in connection.execute("PRAGMA integrity_check(5)")]
    return "" if rows == ["ok"] else "; ".join(rows)


def _schema(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return None
    return str(row[0]) if row else None


def _member(name: str, size: int) -> tarfile.TarInfo:
    """A regular file of mode 0600 owned by nobody in particular (restore sets the owner)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(time.time())
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_member(name, len(data)), io.BytesIO(data))


def _digest_bytes(data: bytes) -> dict[str, Any]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _digest_file(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def restore(app: Flask, archive: Path) -> Restored:
    """Put an archive back into the app's empty instance folder; refuse, changing nothing, otherwise."""
    folder = Path(app.instance_path)
    database = readiness.sqlite_file(app)
    cleared = _clear_unfinished(folder, database)
    _check_empty(folder, database)
    with _opened(archive) as tar:
        manifest = _manifest(tar, archive)
        if manifest.database == SQLITE and database is None:
            raise BackupError(
                f"{archive} holds a SQLite database, but DATABASE_URL points at another database: "
                "unset DATABASE_URL to restore it as the instance's SQLite file."
            )
        if manifest.database == POSTGRESQL and database is not None:
            raise BackupError(
                f"{archive} was made from PostgreSQL and holds only the keys: set DATABASE_URL to the database "
                "you load the pg_dump into, then restore the archive again."
            )
        made: list[Path] = []
        try:
            restored = _unpack(app, tar, archive, manifest, folder, database, made)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            _undo(made)
            raise BackupError(f"{archive} is damaged ({exc}): nothing was restored; use another backup.") from None
        except OSError as exc:
            _undo(made)
            raise BackupError(f"cannot restore into {folder} ({exc}): nothing was restored.") from None
        except BaseException:
            _undo(made)
            raise
    restored.cleared = cleared
    return restored


def _clear_unfinished(folder: Path, database: Path | None) -> list[str]:
    """Remove what a killed restore left in folder: its staging folder and the files it moved in.

    The files are removed only when the folder holds nothing else and each is exactly as that
    restore placed it (an instance that has run since is left alone, and refused as not empty).
    """
    if not folder.is_dir() or folder.is_symlink():
        return []
    running = [path.name for path in folder.iterdir() if path.name.startswith(RESTORE_STAGING) and path.is_dir()]
    stale = _stagings(folder, RESTORE_STAGING)
    if len(stale) < len(running):
        raise BackupError(f"another restore is running into {folder}: let it finish, then look at the folder again.")
    if not stale:
        return []
    placed: dict[str, dict[str, Any]] = {}
    try:
        for work in stale:
            if (work / PLACED).exists():
                placed.update(json.loads((work / PLACED).read_text()))
        present = [path for path in folder.iterdir() if path not in stale]
        if database is not None and database.parent != folder and (database.exists() or database.is_symlink()):
            present.append(database)
        if not all(_unchanged(path, placed.get(str(path))) for path in present):
            return []
        for path in present:
            path.unlink()
        for work in stale:
            shutil.rmtree(work)
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot remove what an interrupted restore left in {folder} ({exc}): move the folder away.") from None
    return [str(path) for path in (*present, *stale)]


def _unchanged(path: Path, digest: dict[str, Any] | None) -> bool:
    """True when path is a regular file with exactly this size and SHA-256."""
    if digest is None or path.is_symlink() or not path.is_file():
        return False
    return _digest_file(path) == {"size": digest.get("size"), "sha256": digest.get("sha256")}


def _check_empty(folder: Path, database: Path | None) -> None:
    """Refuse an instance folder with anything in it, and a database file that exists."""
    if folder.exists() or folder.is_symlink():
        if not folder.is_dir():
            raise BackupError(f"{folder} is not a folder: move it away, or point XMONBRIDGE_INSTANCE at an empty folder.")
        try:
            entries = sorted(path.name for path in folder.iterdir())
        except OSError as exc:
            raise BackupError(f"cannot read {folder}: {exc.strerror}.") from None
        if entries:
            shown = ", ".join(entries[:5]) + (", …" if len(entries) > 5 else "")
            raise BackupError(
                f"{folder} is not empty ({shown}): restore only into an empty instance folder; move this one "
                "away or point XMONBRIDGE_INSTANCE at a new folder."
            )
    if database is not None and (database.exists() or database.is_symlink()):
        raise BackupError(f"{database} exists: restore only where no database is; move it away first.")


@contextmanager
def _opened(archive: Path) -> Iterator[tarfile.TarFile]:
    try:
        tar = tarfile.open(archive, "r:gz")
    except FileNotFoundError:
        raise BackupError(f"{archive} does not exist.") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(f"{archive} is not an xmonbridge backup (not a tar.gz archive: {exc}).") from None
    with tar:
        yield tar


def _manifest(tar: tarfile.TarFile, archive: Path) -> Archive:
    """Read and check the manifest: the format marker, the version, a known database kind."""
    foreign = f"{archive} is not an xmonbridge backup (no {MANIFEST} of format {FORMAT!r})."
    try:
        member = tar.getmember(MANIFEST)
        handle = tar.extractfile(member) if member.isfile() and member.size < CHUNK else None
        manifest = json.loads(handle.read()) if handle is not None else None
    except KeyError:
        raise BackupError(foreign) from None
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise BackupError(f"{archive} is damaged ({exc}): use another backup.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(foreign)
    if manifest.get("version") != VERSION:
        raise BackupError(
            f"{archive} is backup format version {manifest.get('version')!r}; this xmonbridge reads version {VERSION}: "
            "restore it with the xmonbridge that made it."
        )
    files = manifest.get("files")
    kind = manifest.get("database")
    if kind not in (SQLITE, POSTGRESQL) or not isinstance(files, dict) or not set(files) <= set(MEMBERS):
        raise BackupError(f"{archive} has a manifest this xmonbridge does not understand: use another backup.")
    needed = {keys.SECRET_KEY_FILE, keys.FERNET_KEY_FILE} | ({DATABASE} if kind == SQLITE else set())
    if not needed <= set(files):
        raise BackupError(f"{archive} lacks {', '.join(sorted(needed - set(files)))}: use another backup.")
    schema = manifest.get("schema")
    return Archive(archive, kind, sorted(files), str(schema) if schema else None, str(manifest.get("created_at", "")))


def _unpack(
    app: Flask, tar: tarfile.TarFile, archive: Path, manifest: Archive, folder: Path, database: Path | None, made: list[Path]
) -> Restored:
    """Extract into a staging folder, check everything, then move the files into place."""
    expected = _expected_digests(tar, archive)
    _make_folder(folder, made)
    staging, lock = _staging(folder, RESTORE_STAGING)
    try:
        made.append(staging)
        return _unpack_into(app, tar, archive, manifest, folder, database, made, staging, expected)
    finally:
        os.close(lock)


def _unpack_into(
    app: Flask,
    tar: tarfile.TarFile,
    archive: Path,
    manifest: Archive,
    folder: Path,
    database: Path | None,
    made: list[Path],
    staging: Path,
    expected: dict[str, dict[str, Any]],
) -> Restored:
    seen: set[str] = set()
    for member in tar.getmembers():
        if member.name == MANIFEST:
            continue
        if member.name not in expected or member.name in seen or not member.isfile():
            raise BackupError(f"{archive} holds {member.name!r}, which is not part of an xmonbridge backup: use another backup.")
        seen.add(member.name)
        got = _extract(tar, member, staging / member.name)
        if got != expected[member.name]:
            raise BackupError(f"{archive} is damaged: {member.name} does not match its checksum; use another backup.")
    if seen != set(expected):
        raise BackupError(f"{archive} lacks {', '.join(sorted(set(expected) - seen))}: use another backup.")
    needs_migration = False
    if DATABASE in seen:
        needs_migration = _check_database(app, staging / DATABASE, archive)
    targets = {name: database if name == DATABASE and database is not None else folder / name for name in sorted(seen)}
    # Listed before the first move, so that a restore killed while moving can be undone.
    _write_private(staging / PLACED, json.dumps({str(targets[name]): expected[name] for name in targets}).encode())
    for name, target in targets.items():
        if target.exists() or target.is_symlink():
            raise BackupError(f"{target} appeared during the restore: nothing was restored; try again.")
        # Same file system as the staging folder (a rename), unless the database lives elsewhere.
        shutil.move(staging / name, target)
        made.append(target)
    # Done: first the list goes (the files are now the instance's), then the folder.
    (staging / PLACED).unlink()
    _sync_folder(folder)
    (staging / LOCK).unlink()
    staging.rmdir()
    made.remove(staging)
    return Restored(
        archive, manifest.database, sorted(seen), manifest.schema, manifest.created_at, folder=folder, needs_migration=needs_migration
    )


def _expected_digests(tar: tarfile.TarFile, archive: Path) -> dict[str, dict[str, Any]]:
    member = tar.getmember(MANIFEST)
    handle = tar.extractfile(member)
    assert handle is not None  # checked by _manifest()
    files = json.loads(handle.read())["files"]
    for name, digest in files.items():
        if not isinstance(digest, dict) or not isinstance(digest.get("sha256"), str):
            raise BackupError(f"{archive} has a manifest this xmonbridge does not understand: use another backup.")
        files[name] = {"size": digest.get("size"), "sha256": digest["sha256"]}
    return dict(files)


def _make_folder(folder: Path, made: list[Path]) -> None:
    """Create the instance folder (0700) and its missing parents, listing each in made."""
    missing = [path for path in (folder, *folder.parents) if not path.exists()]
    try:
        for path in reversed(missing):
            path.mkdir()
            made.append(path)
        os.chmod(folder, 0o700)
    except OSError as exc:
        raise BackupError(f"cannot create {exc.filename or folder}: {exc.strerror}.") from None


def _write_private(target: Path, data: bytes) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> dict[str, Any]:
    """Write one member to target with mode 0600 from the first byte; return its size and SHA-256."""
    source = tar.extractfile(member)
    assert source is not None
    digest = hashlib.sha256()
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return {"size": size, "sha256": digest.hexdigest()}


def _check_database(app: Flask, path: Path, archive: Path) -> bool:
    """Refuse a copy that fails PRAGMA integrity_check or comes from a newer xmonbridge.

    Return True when its schema is older than this version's (`xmonbridge init` migrates it).
    """
    try:
        # Read-only: nothing is written to the staged copy, not even a journal.
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            problems = _integrity(connection)
            schema = _schema(connection)
    except sqlite3.Error as exc:
        raise BackupError(f"{archive} holds a database that cannot be read ({exc}): use another backup.") from None
    if problems:
        raise BackupError(f"{archive} holds a database that fails PRAGMA integrity_check ({problems}): use another backup.")
    scripts = ScriptDirectory(app.extensions["migrate"].directory)
    known = {script.revision for script in scripts.walk_revisions()}
    if schema is not None and schema not in known:
        raise BackupError(
            f"{archive} holds a database at schema {schema}, made by a newer xmonbridge: "
            "install that version (or a newer one) to restore it."
        )
    return schema != scripts.get_current_head()


def _undo(made: list[Path]) -> None:
    """Remove what a failed restore made, newest first (staging folders with their contents)."""
    for path in reversed(made):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            pass
