"""Login form."""

from __future__ import annotations

from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Length

from ..forms import BaseForm, strip


class LoginForm(BaseForm):
    """ログイン."""

    login = StringField("ログイン名", validators=[DataRequired(), Length(max=64)], filters=[strip])
    password = PasswordField("パスワード", validators=[DataRequired(), Length(max=128)])
    submit = SubmitField("ログイン")
