"""Entry point for `gunicorn wsgi:app`."""

from __future__ import annotations

from xmonbridge import create_app, keys

app = create_app()
keys.require(app)
