"""インシデント (B5, first part): alerts as they arrived and the calls and SMS each caused."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("incidents", __name__, url_prefix="/incidents")

from . import routes  # noqa: E402,F401
