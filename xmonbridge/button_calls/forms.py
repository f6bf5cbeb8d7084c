"""The 通話設定(ボタン操作付き) form (table 3), with the re-call settings beyond X-MON."""

from __future__ import annotations

from typing import Any

from wtforms import BooleanField, IntegerField, RadioField, SelectChoice
from wtforms.validators import InputRequired, NumberRange, Optional

from .. import phone
from ..models import DEFAULT_MAX_CALLS, DEFAULT_RECALL_SECONDS, MODE_ALL, MODES
from ..notify_settings.forms import RecipientSettingForm, SimpleCallForm
from .kind import BUTTON_CALL_KIND

MODE_HELP = "一斉通知:登録した全ての宛先に対して電話通知を行う。輪番通知:登録した宛先の上から順番に電話通知を行う。"
MODE_REQUIRED = "通知設定種別は「一斉通知」か「輪番通知」を選択してください。"
RECALL_MIN, RECALL_MAX = 10, 3600
MAX_CALLS_MAX = 100


class ButtonCallForm(RecipientSettingForm):
    """通話設定(ボタン操作付き): 通知設定種別, the shared fields, ring time and re-calls."""

    kind = BUTTON_CALL_KIND
    voice_numbers = True

    mode = RadioField(
        "通知設定種別",
        choices=[SelectChoice(key, label) for key, label in MODES.items()],
        default=MODE_ALL,
        validators=[InputRequired(message=MODE_REQUIRED)],
        invalid_choice_message=MODE_REQUIRED,
        description=MODE_HELP,
    )
    # The same field as a simple call's: default 60, 5 to 600 seconds.
    ring_seconds = SimpleCallForm.ring_seconds
    recall_seconds = IntegerField(
        "再発信までの間隔(秒)",
        default=DEFAULT_RECALL_SECONDS,
        validators=[
            InputRequired(),
            NumberRange(
                min=RECALL_MIN,
                max=RECALL_MAX,
                message=f"再発信までの間隔(秒)は {RECALL_MIN} から {RECALL_MAX} までの整数で入力してください。",
            ),
        ],
        description=(
            "有効なボタン操作がないまま通話が終わった(応答なし、話し中、ボタン操作なしで切断など)ときに、"
            f"同じユーザに再度電話を掛けるまでの秒数です。{RECALL_MIN}〜{RECALL_MAX} 秒、"
            f"デフォルトは {DEFAULT_RECALL_SECONDS} 秒です。"
        ),
    )
    max_calls = IntegerField(
        "1 ユーザあたりの発信回数の上限",
        default=DEFAULT_MAX_CALLS,
        validators=[
            InputRequired(),
            NumberRange(
                min=0,
                max=MAX_CALLS_MAX,
                message=f"1 ユーザあたりの発信回数の上限は 0 から {MAX_CALLS_MAX} までの整数で入力してください。",
            ),
        ],
        description=(
            "1 回の通知で同じユーザに電話を掛ける回数の上限です。輪番通知では上限に達すると次のユーザに、"
            f"一斉通知ではそのユーザへの発信を終了します。0 は上限なしです(0〜{MAX_CALLS_MAX} 回、"
            f"デフォルトは {DEFAULT_MAX_CALLS} = 上限なし)。"
        ),
    )
    machine_detection = BooleanField(
        "留守番電話の検出",
        description=(
            "Twilio の留守番電話検出(AMD)を使い、留守番電話が応答した通話は応答なしとして扱い再発信します。"
            "検出には追加料金がかかります。デフォルトは使用しない(オフ)です。"
        ),
    )
    # The row whose 「上へ」/「下へ」 was pressed without the page's script.
    move_up = IntegerField(validators=[Optional()])
    move_down = IntegerField(validators=[Optional()])

    def move_row(self, index: int, step: int) -> None:
        """Swap a To row with the one above (step -1) or below (+1); the order is the 輪番 order."""
        ids = [entry.data for entry in self.recipients]
        other = index + step
        if 0 <= index < len(ids) and 0 <= other < len(ids):
            ids[index], ids[other] = ids[other], ids[index]
        self.recipients.process(None, ids)

    def validate(self, extra_validators: Any = None) -> bool:
        """Say which account lacks a From number that is not in its list."""
        ok = super().validate(extra_validators)
        if self.from_number.errors and self.from_number.data and self.account is not None:
            self.from_number.errors = [
                f"Twilio アカウント情報「{self.account.name}」の音声通話に使える電話番号に "
                f"{phone.display(self.from_number.data)} はありません。"
                "一覧から選択してください(一覧が古い場合は「再取得」を押してください)。"
            ]
        return ok

    def values(self) -> dict[str, Any]:
        """The proposed values, as the approval payload holds them."""
        return {
            "mode": self.mode.data,
            **super().values(),
            "ring_seconds": self.ring_seconds.data,
            "recall_seconds": self.recall_seconds.data,
            "max_calls": self.max_calls.data,
            "machine_detection": bool(self.machine_detection.data),
        }
