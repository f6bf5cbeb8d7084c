"""X-MON 設定 form."""

from __future__ import annotations

from wtforms import SelectChoice, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length

from ..forms import BaseForm, HttpUrl, strip
from ..models import VOICES


def _no_trailing_slash(value: str | None) -> str | None:
    return value.rstrip("/") if isinstance(value, str) else value


class XmonSettingsForm(BaseForm):
    """The public URL Twilio reaches, and the voice that reads messages."""

    xmon_url = StringField(
        "X-MON URL",
        validators=[DataRequired(), Length(max=2048), HttpUrl()],
        filters=[strip, _no_trailing_slash],
        description="外部ネットワーク(Twilio)からアクセス可能な URL(例: https://xmon.example.com)",
    )
    voice = SelectField(
        "読み上げ音声",
        choices=[SelectChoice(value, label) for value, label in VOICES],
        validators=[DataRequired()],
        description="電話で読み上げる音声です。TwiML Bin の TwiML にも使われます。",
    )
    submit = SubmitField("設定を反映")
