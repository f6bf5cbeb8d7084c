"""管理者メニュー > API トークン: bearer tokens the monitor uses for the alert API."""

from flask import Blueprint

bp = Blueprint("api_tokens", __name__, url_prefix="/admin/api-tokens")

from . import routes  # noqa: E402,F401
