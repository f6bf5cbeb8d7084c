"""Twilio 連携設定 > 通話設定(シンプル通話) (R5, R6) and SMS 通知設定 (R10).

Both screens share one form base, one set of views and one template set; a Channel
(channels.py) holds what differs between them.
"""

from __future__ import annotations

from flask import Blueprint

simple_bp = Blueprint("simple_calls", __name__, url_prefix="/admin/twilio/simple-calls")
sms_bp = Blueprint("sms_settings", __name__, url_prefix="/admin/twilio/sms-settings")

from . import routes  # noqa: E402,F401
