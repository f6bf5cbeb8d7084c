"""Twilio 連携設定 > 承認待ち (R4)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("approvals", __name__, url_prefix="/admin/twilio/approvals")

from . import routes  # noqa: E402,F401
