"""A real `xmonbridge serve` on 127.0.0.1 in its own instance folder, to start, kill and restart.

Used by tests that need the real process: the dispatcher thread under gunicorn, SIGKILL in
the middle of a storm, a restart that resumes from the database.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask

from xmonbridge import create_app
from xmonbridge.extensions import db
from xmonbridge.models import ApiToken


def cli_path() -> str:
    """The `xmonbridge` console script of the virtualenv running the tests."""
    return str(Path(sys.executable).parent / "xmonbridge")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RealServer:
    """One instance folder and the `serve` processes started on it, one at a time."""

    def __init__(
        self, root: Path, *, mode: str = "live", api_base: str | None = None, database_url: str | None = None, **config: Any
    ) -> None:
        self.root = root
        self.instance = root / "instance"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("XMONBRIDGE_") and k not in ("DATABASE_URL", "TWILIO_API_BASE", "TWILIO_MODE")
        }
        self.env.update(
            XMONBRIDGE_INSTANCE=str(self.instance),
            TWILIO_MODE=mode,
            PYTHONUNBUFFERED="1",
            XDG_RUNTIME_DIR=str(root),
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        if api_base:
            self.env["TWILIO_API_BASE"] = api_base
        if database_url:
            self.env["DATABASE_URL"] = database_url
        for key, value in config.items():
            self.env[f"XMONBRIDGE_{key}"] = json.dumps(value) if not isinstance(value, str) else value
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.cli("init")

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [cli_path(), *args], env=self.env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
        if result.returncode != 0:
            raise AssertionError(f"xmonbridge {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result.stdout

    @contextmanager
    def app_context(self) -> Iterator[Flask]:
        """The instance's app in this process, for seeding and reading its database."""
        saved = {k: os.environ.get(k) for k in ("XMONBRIDGE_INSTANCE", "TWILIO_MODE", "TWILIO_API_BASE", "DATABASE_URL")}
        os.environ["XMONBRIDGE_INSTANCE"] = str(self.instance)
        if "DATABASE_URL" in self.env:
            os.environ["DATABASE_URL"] = self.env["DATABASE_URL"]
        try:
            app = create_app()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        with app.app_context():
            try:
                yield app
            finally:
                db.session.remove()
                db.engine.dispose()

    def make_token(self) -> str:
        """An API token for the alert API (stored hashed, like the API トークン screen does)."""
        token = "xmb_" + secrets.token_urlsafe(32)
        with self.app_context():
            db.session.add(
                ApiToken(name="test", token_hash=hashlib.sha256(token.encode()).hexdigest(), hint=token[:8])
            )
            db.session.commit()
        return token

    def start(self, workers: int = 2) -> None:
        self.starts += 1
        # The child keeps its own copy of the descriptor; ours is closed at once.
        with open(self.root / f"serve-{self.starts}.log", "wb") as log:
            self.proc = subprocess.Popen(
                [cli_path(), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.log()}")
            try:
                urllib.request.urlopen(f"{self.base}/login", timeout=1).close()
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise AssertionError(f"serve did not come up: {self.log()}")

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(self.root.glob("serve-*.log")))

    def kill(self) -> None:
        """SIGKILL the master and every worker: no handler runs, nothing is cleaned up."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, as systemd stops a service; return the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        return int(self.proc.returncode)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.terminate(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def post_alert(self, token: str, fields: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"{self.base}/api/v1/alerts",
            data=json.dumps(fields).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")


def wait_for(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
