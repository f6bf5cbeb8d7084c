"""ハートビート通知 form."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from wtforms import Field, IntegerField, SelectChoice, SelectField, SubmitField
from wtforms.validators import StopValidation

from ..config_views import add_error
from ..extensions import db
from ..forms import BaseForm
from ..heartbeat import Target
from ..models import SmsSetting, User, XmonSettings
from ..notify_settings.kind import recipient_label

MAX_MINUTES = 1440
MINUTES_MESSAGE = f"1 から {MAX_MINUTES} までの整数(分)で入力してください。"
NOT_NOTIFIED = "通知しない"


def _minutes(form: BaseForm, field: Field) -> None:
    """One message whatever is wrong: blank, not a whole number, or out of range."""
    if not field.raw_data or not str(field.raw_data[0]).strip():
        field.errors[:] = []
        raise StopValidation("このフィールドは必須です。")
    if field.data is None or not 1 <= field.data <= MAX_MINUTES:
        field.errors[:] = []
        raise StopValidation(MINUTES_MESSAGE)


def _optional_id(value: Any) -> int | None:
    """An id from the select box; "" (通知しない, 選択してください) is None, anything else not an id
    is -1, which no choice has (so the field says to choose from the list)."""
    if value is None or value == "":
        return None
    return int(value) if isinstance(value, int) or str(value).isdecimal() and str(value).isascii() else -1


class HeartbeatForm(BaseForm):
    """通知先ユーザ, the SMS setting it is texted through, and the two thresholds."""

    user_id = SelectField(
        "通知先ユーザ",
        coerce=_optional_id,
        invalid_choice_message="通知先ユーザを一覧から選択してください。",
        description="配信処理や Twilio が止まったときに SMS を受け取るユーザです(連絡先電話番号のあるユーザ)。",
    )
    sms_setting_id = SelectField(
        "送信に使う SMS 通知設定",
        coerce=_optional_id,
        invalid_choice_message="SMS 通知設定を一覧から選択してください。",
        description="この SMS 通知設定の Twilio アカウント情報と送信元から SMS を送ります。",
    )
    dispatcher_minutes = IntegerField(
        "配信処理が止まってから通知するまでの時間(分)",
        validators=[_minutes],
        description="電話・SMS を送る配信処理がこの時間動いていないと通知します(1〜1440 分)。",
    )
    twilio_minutes = IntegerField(
        "Twilio が要求を拒否し続けてから通知するまでの時間(分)",
        validators=[_minutes],
        description="Twilio への要求がこの時間すべて失敗し続けていると通知します(1〜1440 分)。",
    )
    submit = SubmitField("設定を反映")
    send_test = SubmitField("テスト送信")

    def __init__(self, *args: Any, settings: XmonSettings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_submitted():
            self.user_id.data = settings.heartbeat_user_id
            self.sms_setting_id.data = settings.heartbeat_sms_setting_id
            self.dispatcher_minutes.data = settings.heartbeat_dispatcher_minutes
            self.twilio_minutes.data = settings.heartbeat_twilio_minutes
        users = db.session.scalars(select(User).where(User.phone.is_not(None), User.phone != "").order_by(User.phone, User.id))
        self.users = {user.id: user for user in users}
        self.user_id.choices = [SelectChoice("", NOT_NOTIFIED)] + [
            SelectChoice(str(user.id), recipient_label(user)) for user in self.users.values()
        ]
        settings_list = db.session.scalars(select(SmsSetting).order_by(SmsSetting.name, SmsSetting.id))
        self.sms_settings = {setting.id: setting for setting in settings_list}
        self.sms_setting_id.choices = [SelectChoice("", "選択してください")] + [
            SelectChoice(str(setting.id), setting.name) for setting in self.sms_settings.values()
        ]
        if not self.sms_settings:
            self.sms_setting_id.description = (
                "SMS 通知設定がありません。Twilio 連携設定 → SMS 通知設定で作成し、承認してから選んでください。"
            )

    def validate(self, extra_validators: Any = None) -> bool:
        """A chosen user needs an SMS setting to be texted through."""
        ok = super().validate(extra_validators)
        if self.user_id.data is not None and self.sms_setting_id.data is None and not self.sms_setting_id.errors:
            add_error(self.sms_setting_id, "通知先ユーザを選んだときは、送信に使う SMS 通知設定を選択してください。")
            ok = False
        if self.send_test.data and self.user_id.data is None and not self.user_id.errors:
            add_error(self.user_id, "テスト送信には通知先ユーザを選択してください。")
            ok = False
        return ok

    def target(self) -> Target | None:
        """The chosen user and SMS setting (after validation), or None for 通知しない."""
        if self.user_id.data is None or self.sms_setting_id.data is None:
            return None
        return Target(self.users[self.user_id.data], self.sms_settings[self.sms_setting_id.data])

    def save_to(self, settings: XmonSettings) -> None:
        """Write the form into the settings; a new user or SMS setting is texted about an ongoing outage too."""
        if (settings.heartbeat_user_id, settings.heartbeat_sms_setting_id) != (self.user_id.data, self.sms_setting_id.data):
            settings.heartbeat_dispatcher_sent_at = None
            settings.heartbeat_twilio_sent_at = None
        settings.heartbeat_user_id = self.user_id.data
        settings.heartbeat_sms_setting_id = self.sms_setting_id.data
        settings.heartbeat_dispatcher_minutes = self.dispatcher_minutes.data
        settings.heartbeat_twilio_minutes = self.twilio_minutes.data

