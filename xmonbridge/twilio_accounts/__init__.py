"""エスカレーション関連設定 > Twilio 連携設定 > Twilio アカウント情報 (R3)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("twilio_accounts", __name__, url_prefix="/admin/twilio/accounts")

from . import routes  # noqa: E402,F401
