"""GET /healthz: answers JSON only; a GET needs no CSRF token and no session."""

from __future__ import annotations

from flask import current_app
from werkzeug.wrappers import Response

from .. import health
from ..models import utcnow
from . import bp


@bp.get("/healthz")
def healthz() -> Response:
    """The health report: 200 when ok or warning, 503 when critical."""
    body = health.report(utcnow(), current_app.config)
    response = current_app.json.response(body)
    response.status_code = 503 if body["status"] == health.CRITICAL else 200
    response.headers["Cache-Control"] = "no-store"
    return response
