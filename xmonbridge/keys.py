"""Instance secrets: the Flask SECRET_KEY and the Fernet key, kept in files of mode 0600."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet
from flask import Flask

SECRET_KEY_FILE = "secret_key"
FERNET_KEY_FILE = "fernet.key"


def paths(app: Flask) -> dict[str, Path]:
    """The key files of the instance folder, by config key."""
    folder = Path(app.instance_path)
    return {"SECRET_KEY": folder / SECRET_KEY_FILE, "FERNET_KEY": folder / FERNET_KEY_FILE}


def load(app: Flask) -> None:
    """Read the key files of the instance folder into config, unless config already has them.

    A missing or unreadable file is left out: create_app() must not fail, and
    readiness.require() names the file and the fix.
    """
    for name, path in paths(app).items():
        if not app.config.get(name):
            try:
                app.config[name] = path.read_text().strip()
            except (OSError, UnicodeDecodeError):
                pass


def _write_private(path: Path, content: str, created: list[Path]) -> None:
    # O_EXCL: never overwrite a key, whatever races with us; 0600 from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    created.append(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(content + "\n")


def ensure(app: Flask, created: list[Path]) -> None:
    """Create the instance folder (0700) and any missing key file, appending each new path to created.

    The caller removes what created lists when a later step fails, so a failed
    `xmonbridge init` leaves no half-made instance behind.
    """
    folder = Path(app.instance_path)
    for directory in reversed([folder, *folder.parents]):
        if not directory.exists():
            directory.mkdir()
            created.append(directory)
    os.chmod(folder, 0o700)
    makers = {SECRET_KEY_FILE: lambda: secrets.token_hex(32), FERNET_KEY_FILE: lambda: Fernet.generate_key().decode()}
    for filename, make in makers.items():
        path = folder / filename
        if not path.exists():
            _write_private(path, make(), created)
        elif path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
    load(app)
