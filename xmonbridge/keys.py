"""Instance secrets: the Flask SECRET_KEY and the Fernet key, kept in files of mode 0600."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet
from flask import Flask

SECRET_KEY_FILE = "secret_key"
FERNET_KEY_FILE = "fernet.key"


def load(app: Flask) -> None:
    """Read the key files of the instance folder into config, unless config already has them."""
    folder = Path(app.instance_path)
    for name, filename in (("SECRET_KEY", SECRET_KEY_FILE), ("FERNET_KEY", FERNET_KEY_FILE)):
        path = folder / filename
        if not app.config.get(name) and path.is_file():
            app.config[name] = path.read_text().strip()


def _write_private(path: Path, content: str) -> None:
    # O_EXCL: never overwrite a key, whatever races with us; 0600 from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content + "\n")


def ensure(app: Flask) -> list[str]:
    """Create the instance folder and any missing key file; return the files created."""
    folder = Path(app.instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    created = []
    makers = {SECRET_KEY_FILE: lambda: secrets.token_hex(32), FERNET_KEY_FILE: lambda: Fernet.generate_key().decode()}
    for filename, make in makers.items():
        path = folder / filename
        if not path.exists():
            _write_private(path, make())
            created.append(str(path))
        elif path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
    load(app)
    return created


def require(app: Flask) -> None:
    """Refuse to serve without the generated keys."""
    if not app.config.get("SECRET_KEY") or not app.config.get("FERNET_KEY"):
        raise RuntimeError(
            f"No keys in {app.instance_path}: run `xmonbridge init` before starting xmonbridge."
        )
