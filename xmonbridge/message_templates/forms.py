"""The メッセージテンプレート form (table 4) with its 「テスト通話」 dialog.

「編集」/「編集と承認」 check only the two messages; 「テスト通話の実行」 also needs an account, a
From number and a user, and saves nothing. 「再取得」 reads the account's numbers again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from wtforms import SelectChoice, SelectField, SubmitField, TextAreaField
from wtforms.validators import ValidationError

from .. import from_numbers
from ..config_views import add_error
from ..extensions import db
from ..forms import BaseForm, strip
from ..models import MESSAGE_TEXT_MAX, TwilioAccount, TwilioPhoneNumber, User, UserMessageTemplate
from ..notify_settings.forms import number_label, unix_newlines
from ..notify_settings.kind import recipient_label
from .kind import CLOSING_LABEL, OPENING_LABEL, too_long

NO_ACCOUNT = "Twilio アカウント情報を選択してください。"
NO_FROM = "Twilio 電話番号(From)を一覧から選択してください。一覧が空の場合は「再取得」を押してください。"
NO_USER = "発信先のユーザを、電話番号を設定しているユーザから選択してください。"


def _optional_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _within_limit(form: BaseForm, field: TextAreaField) -> None:
    reason = too_long(str(field.label.text), field.data or "")
    if reason:
        raise ValidationError(reason)


def _message_help(where: str) -> str:
    return f"{where}に流す内容を指定します。{MESSAGE_TEXT_MAX:,} 文字以内の任意のメッセージを指定することができます。"


class MessageTemplateForm(BaseForm):
    """着信直後に流すメッセージ and 通話終了時に流すメッセージ, and the test call's choices."""

    opening_message = TextAreaField(
        OPENING_LABEL, filters=[unix_newlines, strip], validators=[_within_limit], description=_message_help("通知メッセージの冒頭")
    )
    closing_message = TextAreaField(
        CLOSING_LABEL, filters=[unix_newlines, strip], validators=[_within_limit], description=_message_help("通知メッセージの終了直前")
    )
    submit = SubmitField("編集")
    submit_approve = SubmitField("編集と承認")
    # The 「テスト通話」 dialog: checked only by validate_for_test().
    test_account_id = SelectField("Twilio アカウント情報", coerce=_optional_int, validate_choice=False)
    test_from = SelectField("Twilio 電話番号(From)", validate_choice=False)
    test_user_id = SelectField("発信先のユーザ", coerce=_optional_int, validate_choice=False)
    refresh_numbers = SubmitField("再取得")
    run_test = SubmitField("テスト通話の実行")

    def __init__(self, *args: Any, user: User, template: UserMessageTemplate | None = None, **kwargs: Any) -> None:
        data = {"opening_message": "", "closing_message": ""}
        if template is not None:
            data = {"opening_message": template.opening_message, "closing_message": template.closing_message}
        super().__init__(*args, data=data, **kwargs)
        self.user = user
        self.accounts = list(db.session.scalars(select(TwilioAccount).order_by(TwilioAccount.name)))
        self.test_account_id.choices = [SelectChoice(str(a.id), a.name) for a in self.accounts]
        self.phone_users = list(db.session.scalars(select(User).where(User.phone.is_not(None)).order_by(User.phone, User.id)))
        self.test_user_id.choices = [SelectChoice(str(u.id), recipient_label(u)) for u in self.phone_users]
        if not self.is_submitted():
            if self.accounts:
                self.test_account_id.data = self.accounts[0].id
            # The user whose messages these are, when they can be called.
            if user.phone:
                self.test_user_id.data = user.id
        self.account = next((a for a in self.accounts if a.id == self.test_account_id.data), None)
        self.numbers: list[TwilioPhoneNumber] = []
        self.test_from.choices = []

    @staticmethod
    def numbers_of(account_id: int) -> list[TwilioPhoneNumber]:
        """The account's cached voice-capable numbers (a call's From)."""
        return from_numbers.cached(account_id, voice=True)

    def bind_numbers(self) -> None:
        """Offer the chosen account's numbers as From (after any 再取得)."""
        self.numbers = self.numbers_of(self.account.id) if self.account is not None else []
        self.test_from.choices = [SelectChoice(n.phone_number, number_label(n)) for n in self.numbers]
        if not self.numbers and self.account is not None and not from_numbers.was_read(self.account):
            self.test_from.choices = [SelectChoice("", "(未取得です。「再取得」を押してください)")]

    def accounts_data(self) -> dict[str, Any]:
        """Per account its From numbers, for the page's script."""
        return {str(a.id): [[n.phone_number, number_label(n)] for n in self.numbers_of(a.id)] for a in self.accounts}

    def validate_for_test(self) -> bool:
        """Validate the messages, and require an account, one of its numbers and a user with a phone."""
        ok = self.validate()
        if self.account is None:
            add_error(self.test_account_id, NO_ACCOUNT)
            ok = False
        if self.test_from.data not in {n.phone_number for n in self.numbers}:
            add_error(self.test_from, NO_FROM)
            ok = False
        if self.test_user() is None:
            add_error(self.test_user_id, NO_USER)
            ok = False
        return ok

    def test_user(self) -> User | None:
        """The chosen 発信先のユーザ, if it is one with a phone number."""
        return next((u for u in self.phone_users if u.id == self.test_user_id.data), None)

    def has_test_errors(self) -> bool:
        """Whether the dialog has something to say (the page's script opens it again)."""
        return bool(self.test_account_id.errors or self.test_from.errors or self.test_user_id.errors)
