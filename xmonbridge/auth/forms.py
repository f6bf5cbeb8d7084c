"""Login form."""

from __future__ import annotations

from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired

from ..forms import BaseForm, strip


class LoginForm(BaseForm):
    """ログイン."""

    login = StringField("ログイン名", validators=[DataRequired()], filters=[strip])
    password = PasswordField("パスワード", validators=[DataRequired()])
    submit = SubmitField("ログイン")
