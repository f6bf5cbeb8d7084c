"""X-MON 設定 form."""

from __future__ import annotations

from typing import Any

from wtforms import (
    BooleanField,
    Field,
    IntegerField,
    PasswordField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional, Regexp, StopValidation

from .. import secretbox
from ..acks.sink import check_command_file
from ..config_views import add_error
from ..forms import BaseForm, HttpUrl, strip
from ..models import (
    ACK_COMMAND_FILE,
    ACK_HTTP,
    ACK_MODES,
    ACK_NONE,
    DEFAULT_CALLS_PER_15MIN,
    DEFAULT_CALLS_PER_HOUR,
    DEFAULT_RETENTION_DAYS,
    VOICES,
    XmonSettings,
)

MAX_CALLS_PER_15MIN = 100
MAX_CALLS_PER_HOUR = 500
# Retention: at least a month (incidents are looked back on), at most ten years.
MIN_RETENTION_DAYS = 30
MAX_RETENTION_DAYS = 3650
LIMIT_HELP = (
    "1 つの電話番号に、この件数を超えて発信しません(超えた分は上限に空きができるまで待ちます)。"
    "通知が繰り返されても、通信事業者に迷惑電話と判定されて発信元の番号が止められるのを防ぎます。"
)


def _no_trailing_slash(value: str | None) -> str | None:
    return value.rstrip("/") if isinstance(value, str) else value


def _not_blank(form: BaseForm, field: Field) -> None:
    """A number left blank is refused (one message); one absent from the POST keeps its value."""
    if field.raw_data and not str(field.raw_data[0]).strip():
        field.errors[:] = []
        raise StopValidation("このフィールドは必須です。")


class XmonSettingsForm(BaseForm):
    """The public URL Twilio reaches, the voice, where acknowledgements go, per-number limits, retention."""

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
    ack_mode = RadioField(
        "認知済みの通知先",
        choices=[SelectChoice(value, label) for value, label in ACK_MODES.items()],
        default=ACK_NONE,
        invalid_choice_message="認知済みの通知先を選択してください。",
        description="ボタン操作付きの電話で 3# が押されたとき、障害を認知済み(Acknowledge)にするよう監視システムに伝える方法です。",
    )
    ack_command_file = StringField(
        "外部コマンドファイル",
        validators=[Length(max=1024)],
        filters=[strip],
        description=(
            "Nagios の command_file(例: /var/lib/nagios4/rw/nagios.cmd)です。xmonbridge が監視システムと同じサーバーで、"
            "このファイルに書き込めるユーザで動いている必要があります。"
        ),
    )
    ack_http_url = StringField(
        "通知先 URL",
        validators=[Length(max=2048), HttpUrl(allow_query=True)],
        filters=[strip],
        description="監視システムが別のサーバーにある場合に、認知する障害を JSON で POST する URL です。",
    )
    # PasswordField never renders its value back into the page.
    ack_http_token = PasswordField(
        "通知先のトークン",
        validators=[
            Optional(),
            Length(max=1024),
            Regexp(r"^[\x21-\x7e]+$", message="トークンは空白を含まない半角英数字と記号で入力してください。"),
        ],
        filters=[strip],
        description="通知先 URL へのリクエストに Authorization: Bearer ヘッダで付けます。",
    )
    ack_http_token_clear = BooleanField("保存されているトークンを削除する")
    calls_per_15min = IntegerField(
        "同じ番号への発信の上限(15 分あたり)",
        default=DEFAULT_CALLS_PER_15MIN,
        validators=[
            _not_blank,
            NumberRange(min=1, max=MAX_CALLS_PER_15MIN, message=f"1 から {MAX_CALLS_PER_15MIN} までの整数で入力してください。"),
        ],
        description=f"{LIMIT_HELP}既定は {DEFAULT_CALLS_PER_15MIN} 件です。",
    )
    calls_per_hour = IntegerField(
        "同じ番号への発信の上限(1 時間あたり)",
        default=DEFAULT_CALLS_PER_HOUR,
        validators=[
            _not_blank,
            NumberRange(min=1, max=MAX_CALLS_PER_HOUR, message=f"1 から {MAX_CALLS_PER_HOUR} までの整数で入力してください。"),
        ],
        description=f"{LIMIT_HELP}既定は {DEFAULT_CALLS_PER_HOUR} 件です。15 分あたりの上限以上にしてください。",
    )
    retention_days = IntegerField(
        "ログ・インシデントの保存期間(日)",
        default=DEFAULT_RETENTION_DAYS,
        validators=[
            _not_blank,
            NumberRange(
                min=MIN_RETENTION_DAYS,
                max=MAX_RETENTION_DAYS,
                message=f"{MIN_RETENTION_DAYS} から {MAX_RETENTION_DAYS} までの整数で入力してください。",
            ),
        ],
        description=(
            "この日数より古いログ、インシデント(アラートと、その発信・SMS の記録)とシミュレーション発信履歴を"
            "自動的に削除します。処理中の通知と送信待ちの認知済み通知は削除しません。"
            f"既定は {DEFAULT_RETENTION_DAYS} 日です。"
        ),
    )
    submit = SubmitField("設定を反映")

    def __init__(self, *args: Any, settings: XmonSettings, **kwargs: Any) -> None:
        super().__init__(*args, obj=settings, **kwargs)
        self.settings = settings
        if settings.ack_http_token_encrypted:
            self.ack_http_token.description = f"設定済み(表示しません)。{self.ack_http_token.description}空欄のままにすると変更しません。"
        else:
            self.ack_http_token.description = f"未設定です。{self.ack_http_token.description}不要なら空欄にします。"

    @property
    def token_stored(self) -> bool:
        """Tell whether a token is stored (the page offers to remove it)."""
        return bool(self.settings.ack_http_token_encrypted)

    def validate(self, extra_validators: Any = None) -> bool:
        """Also check what the chosen acknowledgement sink needs, and that the limits agree."""
        ok = super().validate(extra_validators)
        if self.ack_mode.data == ACK_COMMAND_FILE and not self.ack_command_file.errors:
            # The FIFO must be there now: a typo would otherwise show only when someone presses 3#.
            problem = check_command_file(self.ack_command_file.data or "")
            if problem:
                add_error(self.ack_command_file, problem)
                ok = False
        elif self.ack_command_file.data and not self.ack_command_file.data.startswith("/"):
            add_error(self.ack_command_file, "外部コマンドファイルは / で始まる絶対パスで指定してください。")
            ok = False
        if self.ack_mode.data == ACK_HTTP and not self.ack_http_url.data and not self.ack_http_url.errors:
            add_error(self.ack_http_url, "「HTTP で POST する」には通知先 URL が必要です。")
            ok = False
        if self.ack_http_token.data and self.ack_http_token_clear.data:
            add_error(self.ack_http_token, "トークンの入力と「保存されているトークンを削除する」は同時に指定できません。")
            ok = False
        per_15min, per_hour = self.calls_per_15min.data, self.calls_per_hour.data
        if per_15min and per_hour and not self.calls_per_hour.errors and per_hour < per_15min:
            add_error(self.calls_per_hour, "1 時間あたりの上限は 15 分あたりの上限以上にしてください。")
            ok = False
        return ok

    def save_to(self, settings: XmonSettings) -> None:
        """Write the form into the settings; the token only encrypted, a blank one kept."""
        settings.xmon_url = self.xmon_url.data
        settings.voice = self.voice.data
        settings.ack_mode = self.ack_mode.data
        settings.ack_command_file = self.ack_command_file.data or ""
        settings.ack_http_url = self.ack_http_url.data or ""
        if self.ack_http_token.data:
            settings.ack_http_token_encrypted = secretbox.encrypt(self.ack_http_token.data)
        elif self.ack_http_token_clear.data:
            settings.ack_http_token_encrypted = None
        settings.calls_per_15min = self.calls_per_15min.data
        settings.calls_per_hour = self.calls_per_hour.data
        settings.retention_days = self.retention_days.data
