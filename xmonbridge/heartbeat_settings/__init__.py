"""管理者メニュー > その他設定 > ハートビート通知: whom the heartbeat texts, and when (heartbeat.py)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("heartbeat_settings", __name__, url_prefix="/admin/heartbeat")

from . import routes  # noqa: E402,F401
