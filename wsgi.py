"""Entry point for `gunicorn wsgi:app`."""

from __future__ import annotations

from xmonbridge import create_app, readiness

app = create_app()
readiness.require(app)
