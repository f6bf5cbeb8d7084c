"""Forms of the 電話シミュレータ: the keys sent with #, and a rehearsal step (live mode)."""

from __future__ import annotations

from wtforms import IntegerField, StringField
from wtforms.validators import DataRequired, Regexp

from ..forms import BaseForm

KEYS_PATTERN = r"^[0-9*]{0,16}$"
KEYS_MESSAGE = "ボタンは 0〜9 と * を 16 個までです(# で送信します)。"


class KeysForm(BaseForm):
    """The keys pressed before # (none: only # was pressed)."""

    keys = StringField("押したボタン", validators=[Regexp(KEYS_PATTERN, message=KEYS_MESSAGE)])


class RehearsalForm(BaseForm):
    """One step of a rehearsed button call: the setting, whose phone, the keys before #."""

    setting_id = IntegerField("通話設定(ボタン操作付き)", validators=[DataRequired()])
    user_id = IntegerField("ユーザ", validators=[DataRequired()])
    keys = StringField("押したボタン", validators=[Regexp(KEYS_PATTERN, message=KEYS_MESSAGE)])
