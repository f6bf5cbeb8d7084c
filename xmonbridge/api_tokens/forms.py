"""The API トークン 新規作成 form."""

from __future__ import annotations

from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Length, ValidationError

from ..forms import BaseForm, strip
from . import tokens


class TokenForm(BaseForm):
    """名称 of a new token (e.g. the monitor that will use it)."""

    name = StringField(
        "名称",
        validators=[DataRequired(), Length(max=128)],
        filters=[strip],
        description="このトークンを使う監視サーバなど、トークンを見分けるための名前です(例: X-MON 本番)。",
    )
    submit = SubmitField("作成")

    def validate_name(self, field: StringField) -> None:
        """Refuse the name of a token that is still valid."""
        if field.data and tokens.name_in_use(field.data):
            raise ValidationError("この名称の有効な API トークンが既にあります。別の名称を入力してください。")
