"""Endpoints Twilio calls: status callbacks and button calls (B1, B7, B9). CSRF-exempt; every request is signed."""

from __future__ import annotations

from flask import Blueprint

from ..extensions import csrf

bp = Blueprint("webhooks", __name__, url_prefix="/twilio")
# Twilio cannot send a CSRF token; the X-Twilio-Signature check replaces it.
csrf.exempt(bp)

from . import routes  # noqa: E402,F401
