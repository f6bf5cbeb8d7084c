"""gunicorn's access log without the secrets in URLs (`serve` uses it; so can `gunicorn wsgi:app`).

Each webhook URL (status callback, voice, gather, answering-machine detection) ends in an
unguessable per-attempt token (public_url.py); the access log shows `/twilio/status/…` instead.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from .public_url import WEBHOOK_PATHS as PATHS
from .public_url import redact


class RedactingLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, writing request lines with callback tokens left out."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        raw = str(environ.get("RAW_URI", "")) + str(environ.get("PATH_INFO", ""))
        if any(path in raw for path in PATHS):
            environ = dict(environ)
            for key in ("RAW_URI", "PATH_INFO", "REQUEST_URI"):
                if key in environ:
                    environ[key] = redact(str(environ[key]))
            req.path = redact(str(getattr(req, "path", "")))
            req.uri = redact(str(getattr(req, "uri", "")))
        super().access(resp, req, environ, request_time)
