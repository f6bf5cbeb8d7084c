"""管理者メニュー > その他設定 > X-MON 設定 (R1, R15)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("xmon_settings", __name__, url_prefix="/admin/xmon-settings")

from . import routes  # noqa: E402,F401
