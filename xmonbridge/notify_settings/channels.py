"""What differs between the 通話設定(シンプル通話) and SMS 通知設定 screens.

The views (routes.py) and templates are shared; each screen is described by a Channel:
its approval kind and form, its test (one call through the TwiML Bin, or one SMS), and
the words the manual uses for that test. A Screen (its base) is what a setting screen
without a test, such as 通話設定(ボタン操作付き), needs of the shared templates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import simple_call, telephony
from ..approval import ConfigKind
from ..config_views import ConfigPages
from ..messages import SMS_TEMPLATES, compose, sample_alert, sms_segments
from ..models import LOG_TEST_CALL, LOG_TEST_SMS, SETTING_SIMPLE_CALL, SETTING_SMS, TwilioAccount, User
from .forms import RecipientSettingForm, SettingForm, SimpleCallForm, SmsSettingForm
from .kind import SIMPLE_CALL_KIND, SMS_KIND


@dataclass(frozen=True, kw_only=True)
class Screen:
    """One kind of notification setting, as its 一覧, form and 詳細表示 present it."""

    blueprint: str
    # RequestLog.setting_type of its requests, and the alert API's kind.
    setting_type: str
    kind: ConfigKind
    form_class: type[RecipientSettingForm]
    # The sentence under the form's heading.
    intro: str
    # Extra rows of the detail page: (field name to show them after, label, text).
    extra_rows: Callable[[Any], list[tuple[str, str, str]]] = lambda setting: []
    # The (?) beside the form's heading: what this kind of notification is (§5.1.3).
    heading_help: str = ""

    @property
    def label(self) -> str:
        """The screen's name: 通話設定(シンプル通話), SMS 通知設定, …."""
        return self.kind.label

    @property
    def bin_url_required(self) -> bool:
        """Tell whether only accounts with a TwiML Bin URL can be used (simple calls)."""
        return self.form_class.bin_url_required

    @property
    def pages(self) -> ConfigPages:
        """The 一覧 and 詳細表示 of this screen, for the shared views."""
        return ConfigPages(self.kind, self.blueprint, "setting_id")

    def endpoint(self, view: str) -> str:
        """The endpoint of one of this screen's views."""
        return f"{self.blueprint}.{view}"

    def field_texts(self, setting: Any) -> dict[str, str]:
        """Each field of a setting as the 承認待ち diff shows it, by field name."""
        values = self.kind.values_of(setting)
        return {f.name: f.text(values[f.name]) for f in self.kind.fields}

    def detail_rows(self, setting: Any) -> list[tuple[str, str]]:
        """What the detail page shows: (label, text) of each field, each extra after its field."""
        texts = self.field_texts(setting)
        extras = self.extra_rows(setting)
        rows = []
        for f in self.kind.fields:
            rows.append((f.label, texts[f.name]))
            rows += [(label, text) for after, label, text in extras if after == f.name]
        return rows


@dataclass(frozen=True, kw_only=True)
class Channel(Screen):
    """A screen with a message and a test: 通話設定(シンプル通話) or SMS 通知設定."""

    form_class: type[SettingForm]
    # 「テスト通話」/「送信テスト」 and the sentence about its cost (§5.1.3, §6).
    test_label: str
    test_cost_note: str
    # What the test does to its one destination: 発信 (a call) or 送信 (an SMS).
    test_verb: str
    # Sends one test with the form's unsaved values; returns the SID or raises TwilioError.
    send_test: Callable[[SettingForm, TwilioAccount, User, int | None], str]
    # Says the test went out; formatted with sid= and to=.
    test_done: str
    # Looks on Twilio for what a test with an unknown outcome may have sent: (account, to,
    # from, since) -> what was found. A test is never repeated blind.
    find_sent: Callable[[TwilioAccount, str, str, datetime], list[telephony.Placed]]
    # The 再生メッセージ置き換え設定 page linked from the 一覧 (speech only).
    replacements_endpoint: str | None = None


def _test_call(form: SettingForm, account: TwilioAccount, to: User, setting_id: int | None) -> str:
    """Place one call through the account's TwiML Bin with the form's unsaved values."""
    values = form.values()
    text = simple_call.spoken_text(values["message_template"], values["custom_message"], sample_alert())
    call = simple_call.fit_bin_call(str(account.twiml_bin_url), text)
    return telephony.place_call(
        account,
        to=str(to.phone),
        from_=values["from_number"],
        url=call.url,
        timeout=values["ring_seconds"],
        context=telephony.LogContext(LOG_TEST_CALL, "simple_call", setting_id, values["name"]),
        shortened_from=call.spoken.original_length,
    )


def _test_sms(form: SettingForm, account: TwilioAccount, to: User, setting_id: int | None) -> str:
    """Send one SMS with the form's unsaved values (no replacements: they are for speech)."""
    values = form.values()
    body = compose(SMS_TEMPLATES, values["message_template"], sample_alert(), values["custom_message"])
    return telephony.send_sms(
        account,
        to=str(to.phone),
        from_=values["from_number"],
        body=body,
        context=telephony.LogContext(LOG_TEST_SMS, "sms", setting_id, values["name"]),
    )


def _simple_call_rows(setting: Any) -> list[tuple[str, str, str]]:
    text = simple_call.spoken_text(setting.message_template, setting.custom_message, sample_alert())
    return [
        ("account_id", "TwiML Bin URL", setting.account.twiml_bin_url or "(未設定)"),
        ("custom_message", "読み上げるメッセージ(サンプル)", text),
    ]


def _sms_rows(setting: Any) -> list[tuple[str, str, str]]:
    text = compose(SMS_TEMPLATES, setting.message_template, sample_alert(), setting.custom_message)
    return [
        ("custom_message", "送信するメッセージ(サンプル)", text),
        ("custom_message", "SMS の分割数", f"{sms_segments(text)} 通"),
    ]


SIMPLE_CALL = Channel(
    blueprint="simple_calls",
    setting_type=SETTING_SIMPLE_CALL,
    kind=SIMPLE_CALL_KIND,
    form_class=SimpleCallForm,
    intro=(
        "Twilio を用いた電話通知を行う際の設定を行います。通話設定は電話通知を行いたいホストやサービスの"
        "エスカレーション設定に登録することで電話通知を行います。"
    ),
    heading_help=(
        "障害が発生した旨のメッセージのみ発信する(シンプル通話)の設定です。指定のユーザに対して、障害が発生した"
        "ホスト名とサービス ID、または任意の固定メッセージを一斉発信します。この機能ではメッセージの再生のみ可能で、"
        "着信した電話口での番号プッシュ操作による操作は行えません。通知には Twilio コンソールで設定した TwiML Bin を"
        "使用するため、閉鎖ネットワーク内からも通知できます。"
    ),
    test_label="テスト通話",
    test_cost_note="テスト通話の使用には発信料が発生します。",
    test_verb="発信",
    send_test=_test_call,
    test_done="テスト通話を {to} に発信しました。Call SID: {sid}",
    find_sent=lambda account, to, from_, since: telephony.find_calls(account, to=to, from_=from_, started_after=since),
    extra_rows=_simple_call_rows,
    replacements_endpoint="simple_calls.replacements",
)

SMS = Channel(
    blueprint="sms_settings",
    setting_type=SETTING_SMS,
    kind=SMS_KIND,
    form_class=SmsSettingForm,
    intro=(
        "Twilio を用いた SMS 通知を行う際の設定を行います。SMS 通知設定は SMS 通知を行いたいホストやサービスの"
        "エスカレーション設定に登録することで SMS 通知が行われます。"
    ),
    test_label="送信テスト",
    test_cost_note="送信テストの使用には SMS 送信料が発生します。",
    test_verb="送信",
    send_test=_test_sms,
    test_done="送信テストの SMS を {to} に送信しました。Message SID: {sid}",
    find_sent=lambda account, to, from_, since: telephony.find_messages(account, to=to, from_=from_, sent_after=since),
    extra_rows=_sms_rows,
)
