"""Forms of 通話設定(シンプル通話) and SMS 通知設定 (one shared base), and 再生メッセージ置き換え設定.

RecipientSettingForm, the base's base, is what 通話設定(ボタン操作付き) (button_calls/) shares too:
名称, account, From and the To rows.

Besides 作成/編集 (and 「…と承認」), a setting form has buttons that save nothing:
「再取得」 (From numbers), 「宛先の追加」 and a row's 「削除」 (server-side fallbacks of the
page's script), and 「発信テストの実行」/「送信テストの実行」 (a test with the unsaved values).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from sqlalchemy import select
from wtforms import FieldList, IntegerField, RadioField, SelectChoice, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from .. import from_numbers, phone, replacement_lists, simple_call, telephony
from ..approval import ConfigKind
from ..config_views import add_error, check_unique_name
from ..extensions import db
from ..forms import BaseForm, strip
from ..messages import (
    CALL_CUSTOM_MAX,
    CALL_TEMPLATES,
    CUSTOM,
    SMS_CUSTOM_MAX,
    SMS_TEMPLATES,
    ReplacementError,
    Replacements,
    Template,
    compose,
    sample_alert,
    samples,
    sms_segments,
    template_choices,
)
from ..models import REPLACEMENT_SIMPLE, TwilioAccount, TwilioPhoneNumber, User
from ..twilio_limits import MAX_URL
from .kind import SIMPLE_CALL_KIND, SMS_KIND, recipient_label

NO_RECIPIENT = "宛先の電話番号(To)を選択してください。"
DUPLICATE_RECIPIENT = "この宛先は既に選択されています。"
NO_TEST_RECIPIENT = "テスト時の宛先の電話番号を、宛先の電話番号(To)から選択してください。"
NO_SMS_NUMBER = (
    "この Twilio アカウントには SMS を送信できる電話番号がありません。"
    "送信元の種類で「英数字の送信者 ID」か「Messaging Service SID」を選んでください。"
)
NO_SMS_NUMBER_OPTION = "(SMS を送信できる番号がありません。英数字の送信者 ID か Messaging Service SID を使ってください)"
NOT_MOBILE = "携帯電話の番号ではありません。SMS が届かない可能性があります。"
NOT_READ_OPTION = "(未取得です。「再取得」を押してください)"


def _optional_int(value: Any) -> int | None:
    """Coerce a select's value to an id; the blank 「選択してください」 becomes None."""
    if value is None or value == "":
        return None
    return int(value)


def unix_newlines(value: Any) -> Any:
    """Filter: browsers send CRLF; count and store a line break as one character."""
    return value.replace("\r\n", "\n").replace("\r", "\n") if isinstance(value, str) else value


def rstrip(value: Any) -> Any:
    """Filter: drop trailing blanks and empty lines."""
    return value.rstrip() if isinstance(value, str) else value


def number_label(number: TwilioPhoneNumber) -> str:
    """A From number with Twilio's friendly name when it says more than the number."""
    shown = phone.display(number.phone_number)
    name = number.friendly_name
    return f"{shown}({name})" if name and name not in (number.phone_number, shown) else shown


class RecipientSettingForm(BaseForm):
    """What every notification setting form shares: 名称, Twilio アカウント情報, Twilio 電話番号(From),
    the 宛先の電話番号(To) rows and the save buttons."""

    kind: ClassVar[ConfigKind]
    # From numbers offered: voice-capable ones for calls, sms-capable ones for SMS.
    voice_numbers: ClassVar[bool]
    # Simple calls dial through the account's TwiML Bin, so only such accounts are offered.
    bin_url_required: ClassVar[bool] = False

    name = StringField("名称", validators=[DataRequired(), Length(max=128)], filters=[strip])
    account_id = SelectField(
        "Twilio アカウント情報", coerce=_optional_int, invalid_choice_message="Twilio アカウント情報を一覧から選択してください。"
    )
    from_number = SelectField(
        "Twilio 電話番号(From)",
        invalid_choice_message="Twilio 電話番号(From)を一覧から選択してください。一覧が空の場合は「再取得」を押してください。",
    )
    recipients = FieldList(
        SelectField(
            "宛先の電話番号(To)",
            coerce=_optional_int,
            choices=lambda form, field: form.recipient_options,
            invalid_choice_message="宛先の電話番号(To)を一覧から選択してください。",
        ),
        min_entries=1,
        max_entries=100,
    )
    submit = SubmitField("作成")
    submit_approve = SubmitField("作成と承認")
    refresh_numbers = SubmitField("再取得")
    add_recipient = SubmitField("宛先の追加")
    # The row whose 「削除」 was pressed without the page's script.
    remove_recipient = IntegerField(validators=[Optional()])

    def __init__(self, *args: Any, setting: Any = None, **kwargs: Any) -> None:
        values = self.kind.values_of(setting) if setting is not None else None
        super().__init__(*args, data=values, **kwargs)
        self.setting = setting
        self.accounts = self.offered_accounts()
        self.account_id.choices = [SelectChoice(str(a.id), a.name) for a in self.accounts]
        if not self.is_submitted() and self.account_id.data is None and self.accounts:
            self.account_id.data = self.accounts[0].id
        self.account = next((a for a in self.accounts if a.id == self.account_id.data), None)
        self.recipient_options = [SelectChoice("", "選択してください")] + [
            SelectChoice(str(u.id), recipient_label(u))
            for u in db.session.scalars(select(User).where(User.phone.is_not(None)).order_by(User.phone, User.id))
        ]
        self.from_number.choices = []
        self.numbers: list[TwilioPhoneNumber] = []
        if setting is not None:
            self.submit.label.text = "編集"
            self.submit_approve.label.text = "編集と承認"

    @classmethod
    def offered_accounts(cls) -> list[TwilioAccount]:
        """Approved accounts this kind of setting can use, by name."""
        query = select(TwilioAccount).order_by(TwilioAccount.name)
        if cls.bin_url_required:
            query = query.where(TwilioAccount.twiml_bin_url.is_not(None), TwilioAccount.twiml_bin_url != "")
        return list(db.session.scalars(query))

    def numbers_of(self, account_id: int) -> list[TwilioPhoneNumber]:
        """The account's cached From numbers this kind of setting can use."""
        return from_numbers.cached(account_id, voice=self.voice_numbers, sms=not self.voice_numbers)

    def bind_numbers(self) -> None:
        """Offer the chosen account's cached numbers as From (after any 再取得)."""
        self.numbers = self.numbers_of(self.account.id) if self.account is not None else []
        self.from_number.choices = [SelectChoice(n.phone_number, number_label(n)) for n in self.numbers]

    def recipient_ids(self) -> list[int]:
        """The chosen recipients, in row order, blanks left out."""
        return [entry.data for entry in self.recipients if entry.data is not None]

    def add_row(self) -> None:
        """Add a blank To row (the no-script 「宛先の追加」), up to the list's maximum."""
        limit = self.recipients.max_entries
        if limit and len(self.recipients) >= limit:
            add_error(self.add_recipient, f"宛先は最大 {limit} 件までです。")
            return
        self.recipients.append_entry()

    def remove_row(self, index: int) -> None:
        """Drop one To row (the no-script 「削除」); one blank row stays at least."""
        ids = [entry.data for entry in self.recipients]
        if 0 <= index < len(ids):
            del ids[index]
        self.recipients.process(None, ids)

    def validate_name(self, field: StringField) -> None:
        """Refuse a name that a setting, or a setting waiting to be created, has."""
        check_unique_name(self.kind, field.data, self.setting)

    def validate(self, extra_validators: Any = None) -> bool:
        """Also refuse blank and repeated To rows (each row gets its own message)."""
        ok = super().validate(extra_validators)
        seen: set[int] = set()
        for entry in self.recipients:
            if entry.errors:
                continue
            if entry.data is None:
                add_error(entry, NO_RECIPIENT)
            elif entry.data in seen:
                add_error(entry, DUPLICATE_RECIPIENT)
            else:
                seen.add(entry.data)
                continue
            ok = False
        return ok

    def values(self) -> dict[str, Any]:
        """The proposed values, as the approval payload holds them."""
        return {
            "name": self.name.data,
            "account_id": self.account_id.data,
            "from_number": self.from_number.data,
            "recipients": self.recipient_ids(),
        }

    def accounts_data(self) -> dict[str, Any]:
        """Per account: TwiML Bin URL and From numbers, for the page's script."""
        return {
            str(a.id): {
                "bin_url": a.twiml_bin_url or "",
                "numbers": [[n.phone_number, number_label(n)] for n in self.numbers_of(a.id)],
            }
            for a in self.accounts
        }


class SettingForm(RecipientSettingForm):
    """What 通話設定(シンプル通話) and SMS 通知設定 share (tables 2 and 5): the message and the test."""

    templates: ClassVar[dict[str, Template]]
    custom_max: ClassVar[int]

    message_template = SelectField("メッセージの内容", invalid_choice_message="メッセージの内容を一覧から選択してください。")
    custom_message = TextAreaField("指定するメッセージ", filters=[unix_newlines, strip])
    test_to = SelectField(
        "テスト時の宛先の電話番号", coerce=_optional_int, choices=lambda form, field: form.test_options(), validate_choice=False
    )
    run_test = SubmitField("テストの実行")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_submitted() and self.message_template.data is None:
            self.message_template.data = next(iter(self.templates))
        self.message_template.choices = [
            SelectChoice(key, label, render_kw=self.template_option_attrs(key))
            for key, label in template_choices(self.templates)
        ]

    def template_option_attrs(self, key: str) -> dict[str, Any]:
        """Extra attributes of a メッセージの内容 option, for the page's script."""
        return {}

    def test_options(self) -> list[SelectChoice]:
        """The form's current To rows, as the test's destinations."""
        labels = {c.value: c.label for c in self.recipient_options}
        return [SelectChoice(str(i), labels[str(i)]) for i in dict.fromkeys(self.recipient_ids()) if str(i) in labels]

    def samples(self) -> list[tuple[str, str]]:
        """(label, text) of each template, from the sample alert, for the (?) icon."""
        texts = samples(self.templates)
        return [(self.templates[key].label, text) for key, text in texts.items()]

    def message_text(self) -> str:
        """The message as the sample alert would produce it (custom text as typed)."""
        key = self.message_template.data if self.message_template.data in (*self.templates, CUSTOM) else CUSTOM
        return compose(self.templates, key, sample_alert(), self.custom_message.data or "")

    def validate_custom_message(self, field: TextAreaField) -> None:
        """Require the text for 「内容を指定する」, within the channel's limit."""
        if self.message_template.data != CUSTOM:
            return
        if not field.data:
            raise ValidationError("「内容を指定する」を選択した場合は、メッセージを入力してください。")
        if len(field.data) > self.custom_max:
            raise ValidationError(f"メッセージは {self.custom_max} 文字以内で入力してください(現在 {len(field.data)} 文字)。")

    def validate_for_test(self) -> bool:
        """Validate as for saving, and require a test destination among the To rows."""
        ok = self.validate()
        if self.test_to.data is None or self.test_to.data not in self.recipient_ids():
            add_error(self.test_to, NO_TEST_RECIPIENT)
            ok = False
        return ok

    def values(self) -> dict[str, Any]:
        custom = self.message_template.data == CUSTOM
        return {
            **super().values(),
            "message_template": self.message_template.data,
            "custom_message": self.custom_message.data if custom else "",
        }


class SimpleCallForm(SettingForm):
    """通話設定(シンプル通話) (table 2)."""

    kind = SIMPLE_CALL_KIND
    templates = CALL_TEMPLATES
    custom_max = CALL_CUSTOM_MAX
    voice_numbers = True
    bin_url_required = True

    # Display only: always the chosen account's URL, whatever is posted.
    twiml_bin_url = StringField(
        "TwiML Bin URL",
        render_kw={"readonly": True},
        description="選択した Twilio アカウント情報に設定されている TwiML Bin URL が表示されます。",
    )
    ring_seconds = IntegerField(
        "呼び出しを行い続ける秒数",
        default=60,
        validators=[
            InputRequired(),
            NumberRange(min=5, max=600, message="呼び出しを行い続ける秒数は 5 から 600 までの整数で入力してください。"),
        ],
        description="通知先が留守番電話機能を利用している場合、留守番電話機能が動作しない秒数内に収める必要があります。既定は 60 秒です(5〜600 秒)。",
    )
    run_test = SubmitField("発信テストの実行")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.twiml_bin_url.data = self.account.twiml_bin_url if self.account is not None else ""

    def values(self) -> dict[str, Any]:
        return {**super().values(), "ring_seconds": self.ring_seconds.data}

    def url_length_note(self, text: str) -> str:
        """How long the call's Url is for a message (after replacements), against Twilio's 4,000."""
        if self.account is None or not self.account.twiml_bin_url:
            return ""
        if not hasattr(self, "_replacements"):
            self._replacements = replacement_lists.approved(REPLACEMENT_SIMPLE)
        spoken = self._replacements.apply(text)
        length = len(simple_call.bin_call_url(self.account.twiml_bin_url, spoken))
        note = f"呼び出し URL の長さ: {length:,} / {MAX_URL:,} 文字"
        if simple_call.fit_bin_call(self.account.twiml_bin_url, spoken).spoken.shortened:
            note += "(上限を超えるため、通話ではメッセージの末尾を省略し「以下省略」と読み上げます)"
        return note


SENDER_NUMBER = "number"
SENDER_ALPHANUMERIC = "alphanumeric"
SENDER_SERVICE = "service"
# Twilio's alphanumeric sender IDs: up to 11 of A-Z, a-z, 0-9 and space, at least one letter.
ALPHANUMERIC_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-f]{32}")


def _lower_service_sid(value: Any) -> Any:
    if isinstance(value, str) and len(value) == 34 and value[:2].upper() == "MG":
        return "MG" + value[2:].lower()
    return value


class SmsSettingForm(SettingForm):
    """SMS 通知設定 (table 5), whose sender may also be an alphanumeric ID or a Messaging Service.

    Japanese mobiles are usually texted from an alphanumeric sender ID or through a Messaging
    Service, and an account for Japan may own no SMS-capable number at all.
    """

    kind = SMS_KIND
    templates = SMS_TEMPLATES
    custom_max = SMS_CUSTOM_MAX
    voice_numbers = False
    run_test = SubmitField("送信テストの実行")
    sender_kind = RadioField(
        "送信元の種類",
        choices=[
            SelectChoice(SENDER_NUMBER, "Twilio 電話番号"),
            SelectChoice(SENDER_ALPHANUMERIC, "英数字の送信者 ID"),
            SelectChoice(SENDER_SERVICE, "Messaging Service SID"),
        ],
        default=SENDER_NUMBER,
        invalid_choice_message="送信元の種類を選択してください。",
    )
    alphanumeric_sender = StringField(
        "英数字の送信者 ID",
        filters=[strip],
        description=(
            "受信した携帯電話に送信元として表示される名前です(例: XMON)。半角英数字と空白で 11 文字以内、"
            "英字を 1 文字以上含めます。日本の携帯電話向けには Twilio での事前登録が必要な場合があります。"
        ),
    )
    messaging_service_sid = StringField(
        "Messaging Service SID",
        filters=[strip, _lower_service_sid],
        description="Twilio コンソールの Messaging Service の SID(MG で始まる 34 文字)です。送信に使う番号や送信者 ID は Twilio が選びます。",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_submitted() and self.setting is not None:
            sender = self.setting.from_number or ""
            if telephony.is_messaging_service(sender):
                self.sender_kind.data, self.messaging_service_sid.data = SENDER_SERVICE, sender
            elif sender and not sender.startswith("+"):
                self.sender_kind.data, self.alphanumeric_sender.data = SENDER_ALPHANUMERIC, sender
        self.recipient_options = [
            SelectChoice(c.value, c.label, render_kw=self._mobile_attrs(c.value)) for c in self.recipient_options
        ]

    def _mobile_attrs(self, user_id: str) -> dict[str, Any]:
        if not user_id:
            return {}
        user = db.session.get(User, int(user_id))
        return {"data-mobile": "1" if user is not None and phone.is_mobile(user.phone) else "0"}

    def not_mobile(self, user_id: int | None) -> bool:
        """Whether a chosen recipient's number is not a mobile one (SMS may not arrive)."""
        if user_id is None:
            return False
        user = db.session.get(User, user_id)
        return user is not None and bool(user.phone) and not phone.is_mobile(user.phone)

    def no_numbers_note(self) -> str:
        """What to do when the account's numbers were read and none can send SMS."""
        if self.account is None or self.numbers or not from_numbers.was_read(self.account):
            return ""
        return NO_SMS_NUMBER

    def bind_numbers(self) -> None:
        """Offer the SMS-capable numbers; an empty list says why in its one blank option.

        Without the page's script the list would otherwise be an empty box (and an account
        that was read and owns only voice numbers is not "未取得"). The blank option is never
        accepted as a number (validate).
        """
        super().bind_numbers()
        if self.account is not None and not self.numbers:
            label = NO_SMS_NUMBER_OPTION if from_numbers.was_read(self.account) else NOT_READ_OPTION
            self.from_number.choices = [SelectChoice("", label)]

    def sender(self) -> str:
        """The sender as stored in from_number."""
        kind = self.sender_kind.data
        if kind == SENDER_ALPHANUMERIC:
            return str(self.alphanumeric_sender.data or "")
        if kind == SENDER_SERVICE:
            return str(self.messaging_service_sid.data or "")
        return str(self.from_number.data or "")

    def validate(self, extra_validators: Any = None) -> bool:
        """Check only the sender of the chosen kind."""
        kind = self.sender_kind.data
        self.from_number.validate_choice = kind == SENDER_NUMBER
        ok = super().validate(extra_validators)
        if kind == SENDER_NUMBER:
            if not self.from_number.errors and not self.from_number.data:
                # The blank option of an empty list: say why it is empty and what to use instead.
                add_error(self.from_number, self.no_numbers_note() or str(self.from_number.invalid_choice_message))
                ok = False
            return ok
        self.from_number.errors = []
        if kind == SENDER_ALPHANUMERIC:
            value = self.alphanumeric_sender.data or ""
            if not ALPHANUMERIC_SENDER.fullmatch(value):
                add_error(
                    self.alphanumeric_sender,
                    "英数字の送信者 ID は半角英数字と空白で 11 文字以内、英字を 1 文字以上含めて入力してください。",
                )
                ok = False
        elif kind == SENDER_SERVICE:
            if not MESSAGING_SERVICE_SID.fullmatch(self.messaging_service_sid.data or ""):
                add_error(self.messaging_service_sid, "Messaging Service SID は「MG」と32桁の16進数で入力してください。")
                ok = False
        return ok and not any(f.errors for f in self)

    def values(self) -> dict[str, Any]:
        return {**super().values(), "from_number": self.sender()}

    def accounts_data(self) -> dict[str, Any]:
        data = super().accounts_data()
        for account in self.accounts:
            if from_numbers.was_read(account) and not data[str(account.id)]["numbers"]:
                data[str(account.id)]["empty"] = NO_SMS_NUMBER_OPTION
        return data

    def template_option_attrs(self, key: str) -> dict[str, Any]:
        if key not in self.templates:
            return {}
        return {"data-segments": sms_segments(self.templates[key].render(sample_alert()))}

    def segments(self) -> int:
        """How many SMS segments the message takes (for a template: its sample)."""
        return sms_segments(self.message_text())


class ReplacementForm(BaseForm):
    """再生メッセージ置き換え設定 (§5.1.4): `word,reading` lines."""

    content = TextAreaField(
        "再生メッセージ置き換え設定",
        validators=[Length(max=20000)],
        filters=[unix_newlines, rstrip],
        description="任意の単語とフリガナ(読み方)を半角カンマ区切りで入力します。複数の単語は改行区切りで入力します。",
    )
    submit = SubmitField("再生メッセージ置き換え設定")
    submit_approve = SubmitField("再生メッセージ置き換え設定と承認")

    def validate(self, extra_validators: Any = None) -> bool:
        """Refuse bad lines, each with its line number."""
        ok = super().validate(extra_validators)
        try:
            Replacements.parse(self.content.data or "")
        except ReplacementError as exc:
            self.content.errors = [*self.content.errors, *exc.errors]
            ok = False
        return ok
