"""User form, the same for 新規作成 and 編集."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from wtforms import BooleanField, EmailField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Email, Length, Optional, Regexp, ValidationError

from .. import phone
from ..auth import sessions
from ..extensions import db
from ..forms import BaseForm, PhoneNumber, blank_to_none, strip
from ..models import User

LOGIN_TAKEN = "このログイン名は既に使われています。"


class PhoneField(StringField):
    """A phone number shown as the manual writes it (+81-90-0123-0001), stored as E.164."""

    def _value(self) -> str:
        # What was typed comes back unchanged when it is not a number yet.
        if isinstance(self.data, str) and re.fullmatch(r"\+[0-9]{2,15}", self.data):
            return phone.display(self.data)
        return self.data or ""


class UserForm(BaseForm):
    """基本設定 of a user, as in §3, plus the roles 管理者 and 承認権限."""

    login = StringField(
        "ログイン名",
        validators=[
            DataRequired(),
            Length(max=64),
            Regexp(r"^[A-Za-z0-9_.@-]+$", message="ログイン名は半角英数字と _ . @ - で入力してください。"),
        ],
        filters=[strip],
    )
    name = StringField("表示名", validators=[Length(max=128)], filters=[strip])
    password = PasswordField(
        "パスワード(X-MON ローカル認証)",
        validators=[Optional(), Length(min=8, max=128, message="パスワードは8文字以上128文字以内で入力してください。")],
    )
    login_disabled = BooleanField("ログインを許可しない")
    phone = PhoneField(
        "連絡先電話番号(Twilio API連携)",
        validators=[Length(max=32), PhoneNumber()],
        filters=[strip, blank_to_none],
        description="国番号から入力します(例: 090-0123-xxxx は +81-90-0123-xxxx)。",
    )
    email = EmailField(
        "E-MAILアドレス",
        validators=[Optional(), Length(max=254), Email(message="E-MAILアドレスの形式が正しくありません。")],
        filters=[strip, blank_to_none],
    )
    mobile_email = EmailField(
        "携帯モバイル用E-MAILアドレス",
        validators=[Optional(), Length(max=254), Email(message="E-MAILアドレスの形式が正しくありません。")],
        filters=[strip, blank_to_none],
    )
    is_admin = BooleanField("管理者")
    is_approver = BooleanField("承認権限")
    submit = SubmitField("作成")

    def __init__(self, *args: Any, user: User | None = None, **kwargs: Any) -> None:
        super().__init__(*args, obj=user, **kwargs)
        self.user = user
        if user is not None:
            self.submit.label.text = "編集"
            self.password.description = "空欄のままにすると変更しません。"

    def validate_login(self, field: StringField) -> None:
        """Refuse a login name another user has."""
        other = db.session.scalar(select(User).where(User.login == field.data))
        if other is not None and other is not self.user:
            raise ValidationError(LOGIN_TAKEN)

    def validate(self, extra_validators: Any = None) -> bool:
        """Also require a password for a new user who may log in (Optional() skips blanks)."""
        ok = super().validate(extra_validators)
        if self.user is None and not self.password.data and not self.login_disabled.data:
            self.password.errors.append("ログインを許可するユーザにはパスワードを入力してください。")
            ok = False
        return ok

    def save_to(self, user: User) -> None:
        """Copy the form's values into user (the password only when one was typed).

        A new password ends the user's other sessions; the one making the change stays.
        """
        for name in ("login", "name", "login_disabled", "phone", "email", "mobile_email", "is_admin", "is_approver"):
            setattr(user, name, getattr(self, name).data)
        user.name = user.name or ""
        if self.password.data:
            user.set_password(self.password.data, keep_session=sessions.current_token_hash())
