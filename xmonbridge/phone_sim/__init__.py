"""電話シミュレータ (B4): each user's phone as a card that rings for simulated calls and SMS."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("phone_sim", __name__, url_prefix="/admin/phone-simulator")

from . import routes  # noqa: E402,F401
