"""Twilio 連携設定 > 通話設定(ボタン操作付き) (R7, manual §5.2.1).

The screens reuse what 通話設定(シンプル通話) and SMS 通知設定 share (notify_settings/): the
form base, the recipient kind, the detail page and its escalation commands. What is their
own: 通知設定種別 (一斉通知 / 輪番通知), the re-call settings, 「上へ」「下へ」 on the To rows
(the 輪番 order), and no test on the form (it is on メッセージテンプレート).
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("button_calls", __name__, url_prefix="/admin/twilio/button-calls")

from . import routes  # noqa: E402,F401
