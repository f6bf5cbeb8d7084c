"""エスカレーション関連設定 > Twilio 連携設定 > ログ (R13, manual §9) and the simulated calls list."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("logs", __name__, url_prefix="/admin/twilio/logs")

from . import routes  # noqa: E402,F401
