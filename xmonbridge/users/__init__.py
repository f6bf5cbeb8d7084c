"""管理者メニュー > ユーザ管理 (R2)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("users", __name__, url_prefix="/admin/users")

from . import routes  # noqa: E402,F401
