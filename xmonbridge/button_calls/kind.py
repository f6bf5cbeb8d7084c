"""通話設定(ボタン操作付き) as an approval kind (key "button_call").

Its recipients are an ordered list of user ids, as for simple calls and SMS; here the order
is also the 輪番 order.
"""

from __future__ import annotations

from typing import Any

from ..approval import Field
from ..calls import recipients as call_recipients
from ..models import MODES, SETTING_BUTTON_CALL, SETTING_TYPES, ButtonCallRecipient, ButtonCallSetting, utcnow
from ..notify_settings.kind import account_text, phone_text, recipient_kind, recipients_text


def _seconds(value: Any) -> str:
    return f"{value} 秒"


def _recipients_changed(setting: ButtonCallSetting, user_ids: list[int]) -> None:
    """An approved edit: the setting's active notification stops calling the users taken off."""
    call_recipients.drop_removed(setting.id, user_ids, utcnow())


def _max_calls_text(value: Any) -> str:
    return f"{value} 回" if value else "上限なし"


BUTTON_CALL_KIND = recipient_kind(
    "button_call",
    SETTING_TYPES[SETTING_BUTTON_CALL],
    ButtonCallSetting,
    ButtonCallRecipient,
    (
        Field("mode", "通知設定種別", show=lambda value: MODES.get(value, str(value))),
        Field("name", "名称"),
        Field("account_id", "Twilio アカウント情報", show=account_text),
        Field("from_number", "Twilio 電話番号(From)", show=phone_text),
        Field("recipients", "宛先の電話番号(To)", show=recipients_text),
        Field("ring_seconds", "呼び出しを行い続ける秒数", show=_seconds),
        Field("recall_seconds", "再発信までの間隔(秒)", show=_seconds),
        Field("max_calls", "1 ユーザあたりの発信回数の上限", show=_max_calls_text),
        Field("machine_detection", "留守番電話の検出", show=lambda value: "有効" if value else "無効"),
    ),
    "button_calls.show",
    recipients_changed=_recipients_changed,
)
