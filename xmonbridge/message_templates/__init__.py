"""Twilio 連携設定 > 通話設定(ボタン操作付き) > メッセージテンプレート (R8, §5.2.2) and the
button-call 再生メッセージ置き換え設定 tab (§5.2.3)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("message_templates", __name__, url_prefix="/admin/twilio/button-calls/templates")

from . import routes  # noqa: E402,F401
