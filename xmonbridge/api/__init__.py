"""The alert API (R11): `POST /api/v1/alerts` with a bearer token."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import routes  # noqa: E402,F401
