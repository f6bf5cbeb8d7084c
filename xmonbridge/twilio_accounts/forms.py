"""Twilio アカウント情報 form (table 1), the same for 新規作成 and 編集."""

from __future__ import annotations

from typing import Any

from wtforms import IntegerField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, NumberRange, Optional, Regexp

from .. import secretbox
from ..config_views import check_unique_name
from ..forms import BaseForm, HttpUrl, blank_to_none, strip
from ..models import TwilioAccount
from .kind import CPS_LABEL, DEFAULT_PREVIOUS_TOKEN_HOURS, KIND, PREVIOUS_TOKEN_HOURS, PREVIOUS_TOKEN_LABEL


def _lower_hex(value: Any) -> Any:
    # SIDs are "AC" + lowercase hex; accept upper-case hex as typed from elsewhere.
    if isinstance(value, str) and len(value) == 34 and value[:2].upper() == "AC":
        return "AC" + value[2:].lower()
    return value


_BIN_PREFIX = "https://handler.twilio.com/twiml/EH"


def _lower_bin_sid(value: Any) -> Any:
    # The bin's SID is "EH" + lowercase hex; accept upper-case hex as copied from elsewhere.
    if isinstance(value, str) and value.startswith(_BIN_PREFIX):
        return _BIN_PREFIX + value[len(_BIN_PREFIX):].lower()
    return value


# Twilio raises an account's CPS on request; beyond this a typo is more likely than a contract.
MAX_CPS = 100
# A week: the old token may be why it was changed, so it should not stay valid for long.
MAX_PREVIOUS_TOKEN_HOURS = 168


class TwilioAccountForm(BaseForm):
    """名称, ACCOUNT SID, AUTH TOKEN, TwiML Bin URL, with 作成 / 作成と承認."""

    name = StringField("名称", validators=[DataRequired(), Length(max=128)], filters=[strip])
    account_sid = StringField(
        "ACCOUNT SID",
        validators=[
            DataRequired(),
            Regexp(r"^AC[0-9a-f]{32}$", message="ACCOUNT SID は「AC」と32桁の16進数で入力してください。"),
        ],
        filters=[strip, _lower_hex],
    )
    # PasswordField never renders its value back into the page.
    auth_token = PasswordField(
        "AUTH TOKEN",
        validators=[
            Optional(),
            Regexp(r"^[0-9a-fA-F]{32}$", message="AUTH TOKEN は32桁の16進数で入力してください。"),
        ],
        filters=[strip],
    )
    twiml_bin_url = StringField(
        "TwiML Bin URL",
        validators=[
            Optional(),
            Length(max=2048),
            HttpUrl(https_only=True),
            Regexp(
                r"^https://handler\.twilio\.com/twiml/EH[0-9a-f]{32}$",
                message=(
                    "TwiML Bin URL は Twilio コンソールに表示される URL"
                    "(https://handler.twilio.com/twiml/EH と32桁の16進数)を入力してください。"
                ),
            ),
        ],
        filters=[strip, _lower_bin_sid, blank_to_none],
        description=(
            "障害が発生した旨のメッセージの発信を行う場合に設定します。"
            "空欄のまま登録し、後から設定を変更することができます。"
        ),
    )
    cps = IntegerField(
        CPS_LABEL,
        default=1,
        validators=[
            Optional(),
            NumberRange(min=1, max=MAX_CPS, message=f"1 から {MAX_CPS} までの整数で入力してください。"),
        ],
        description=(
            "このアカウントで 1 秒間に発信・送信する上限です。空欄の場合は Twilio の既定と同じ 1 になります。"
            "Twilio で上限を引き上げた場合にだけ変更してください(超えた分は Twilio で待たされます)。"
        ),
    )
    # Only on 編集: how long webhooks signed with the token being replaced are still accepted (B9).
    previous_token_hours = IntegerField(
        PREVIOUS_TOKEN_LABEL,
        default=DEFAULT_PREVIOUS_TOKEN_HOURS,
        validators=[
            Optional(),
            NumberRange(
                min=0,
                max=MAX_PREVIOUS_TOKEN_HOURS,
                message=f"0 から {MAX_PREVIOUS_TOKEN_HOURS} までの整数(時間)で入力してください。",
            ),
        ],
        description=(
            "AUTH TOKEN を変更したときだけ使います。変更が承認されてからこの時間(時間単位)は、"
            "変更前の AUTH TOKEN で署名された Twilio からのリクエスト(発信済みの通話の状態通知など)も受け付けます。"
            f"空欄の場合は {DEFAULT_PREVIOUS_TOKEN_HOURS} 時間です。"
            "AUTH TOKEN が漏れたために変更する場合は 0 にしてください(すぐに受け付けなくなります)。"
        ),
    )
    submit = SubmitField("作成")
    submit_approve = SubmitField("作成と承認")

    def __init__(self, *args: Any, account: TwilioAccount | None = None, **kwargs: Any) -> None:
        super().__init__(*args, obj=account, **kwargs)
        self.account = account
        if account is None:
            # A new account has no previous token.
            del self.previous_token_hours
        else:
            self.submit.label.text = "編集"
            self.submit_approve.label.text = "編集と承認"
            self.auth_token.description = "空欄のままにすると変更しません。"

    def validate_name(self, field: StringField) -> None:
        """Refuse a name that an account, or an account waiting to be created, has."""
        check_unique_name(KIND, field.data, self.account)

    def validate(self, extra_validators: Any = None) -> bool:
        """Also require the token on 新規作成 (Optional() skips blanks on 編集)."""
        ok = super().validate(extra_validators)
        if self.account is None and not self.auth_token.data:
            self.auth_token.errors.append("このフィールドは必須です。")
            ok = False
        return ok

    def values(self) -> dict[str, Any]:
        """The proposed values; the token leaves the form only encrypted."""
        values: dict[str, Any] = {
            "name": self.name.data,
            "account_sid": self.account_sid.data,
            "twiml_bin_url": self.twiml_bin_url.data,
            "cps": self.cps.data or 1,
        }
        if self.auth_token.data:
            values["auth_token_encrypted"] = secretbox.encrypt(self.auth_token.data.lower())
            if self.account is not None:
                hours = self.previous_token_hours.data
                values[PREVIOUS_TOKEN_HOURS.name] = DEFAULT_PREVIOUS_TOKEN_HOURS if hours is None else hours
        return values
