"""API トークン form: 新規作成 asks only for a name."""

from __future__ import annotations

from wtforms import StringField
from wtforms.validators import DataRequired, Length

from ..forms import BaseForm, strip


class ApiTokenForm(BaseForm):
    name = StringField(
        "名称",
        validators=[DataRequired(), Length(max=128)],
        filters=[strip],
        description="用途がわかる名前を付けてください(例: X-MON 本番)。",
    )
