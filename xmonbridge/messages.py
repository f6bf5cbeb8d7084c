"""Message composition: from an alert to the text spoken in a call or sent by SMS.

Replacements (再生メッセージ置き換え設定) apply to spoken text only; TwiML escaping is
left to the Twilio SDK.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from .filters import jst

CUSTOM = "custom"
CALL_CUSTOM_MAX = 350
SMS_CUSTOM_MAX = 64

NOTIFICATION_TYPES = {
    "PROBLEM": "障害",
    "RECOVERY": "復旧",
    "ACKNOWLEDGEMENT": "認知",
    "FLAPPINGSTART": "フラッピング開始",
    "FLAPPINGSTOP": "フラッピング終了",
    "DOWNTIMESTART": "ダウンタイム開始",
    "DOWNTIMEEND": "ダウンタイム終了",
    "FLAPPINGDISABLED": "フラッピング検知無効",
    "DOWNTIMECANCELLED": "ダウンタイム取り消し",
    "CUSTOM": "カスタム通知",
}


@dataclass(frozen=True)
class Alert:
    """What the monitor reported: enough to compose every template."""

    notification_type: str
    host: str
    state: str
    time: datetime  # naive UTC
    service: str | None = None
    output: str = ""

    @property
    def type_label(self) -> str:
        """The notification type in Japanese (PROBLEM → 障害)."""
        return NOTIFICATION_TYPES.get(self.notification_type.upper(), self.notification_type)


def sample_alert() -> Alert:
    """The alert used for the (?) samples and for test calls."""
    return Alert(
        notification_type="PROBLEM",
        host="web-server01",
        service="HTTP",
        state="CRITICAL",
        time=datetime(2026, 4, 1, 1, 23, 45),
        output="Connection refused",
    )


@dataclass(frozen=True)
class Template:
    """A message template; `{subject}` is 「ホスト X のサービス Y」 or 「ホスト X」."""

    label: str
    text: str

    def render(self, alert: Alert) -> str:
        """Fill the template from an alert."""
        subject = f"ホスト {alert.host} のサービス {alert.service}" if alert.service else f"ホスト {alert.host}"
        return self.text.format(
            subject=subject,
            type=alert.type_label,
            state=alert.state,
            time=jst(alert.time, "%Y年%m月%d日 %H時%M分"),
            output=alert.output,
        )


CALL_TEMPLATES: dict[str, Template] = {
    "fault": Template("障害発生の通知(ホスト名・サービスID)", "X-MON からの{type}通知です。{subject} で{type}が発生しました。"),
    "state": Template(
        "障害発生の通知(ホスト名・サービスID・状態)", "X-MON からの{type}通知です。{subject} の状態が {state} になりました。"
    ),
    "detail": Template(
        "障害発生の通知(詳細)", "X-MON からの{type}通知です。{time}、{subject} の状態が {state} になりました。詳細は {output} です。"
    ),
}

SMS_TEMPLATES: dict[str, Template] = {
    "fault": Template("障害発生の通知(ホスト名・サービスID)", "[X-MON {type}] {subject}"),
    "state": Template("障害発生の通知(ホスト名・サービスID・状態)", "[X-MON {type}] {subject} {state}"),
    "detail": Template("障害発生の通知(詳細)", "[X-MON {type}] {time} {subject} {state} {output}"),
}


def compose(templates: dict[str, Template], key: str, alert: Alert, custom_text: str = "") -> str:
    """The text for one alert: the chosen template, or the custom text as is."""
    if key == CUSTOM:
        return custom_text
    return templates[key].render(alert)


# Texts for the notification types the templates do not read naturally for: the templates say
# 「…で障害が発生しました」, which fits PROBLEM (and X-MON's RECOVERY) only.
CALL_OTHER: dict[str, Template] = {
    "RECOVERY": Template("復旧", "X-MON からの復旧通知です。{subject} の状態が {state} に戻りました。"),
    "FLAPPINGSTART": Template(
        "フラッピング開始", "X-MON からの通知です。{subject} の状態が不安定になりました。現在の状態は {state} です。"
    ),
    "FLAPPINGSTOP": Template("フラッピング終了", "X-MON からの通知です。{subject} の状態の不安定さが収まりました。現在の状態は {state} です。"),
    "FLAPPINGDISABLED": Template("フラッピング検知無効", "X-MON からの通知です。{subject} の状態の不安定さの検知が無効になりました。"),
    "DOWNTIMESTART": Template("ダウンタイム開始", "X-MON からの通知です。{subject} の計画停止が始まりました。"),
    "DOWNTIMEEND": Template("ダウンタイム終了", "X-MON からの通知です。{subject} の計画停止が終わりました。"),
    "DOWNTIMECANCELLED": Template("ダウンタイム取り消し", "X-MON からの通知です。{subject} の計画停止が取り消されました。"),
    "CUSTOM": Template("カスタム通知", "X-MON からの通知です。{subject} の状態は {state} です。{output}"),
}
SMS_OTHER: dict[str, Template] = {
    "RECOVERY": Template("復旧", "[X-MON 復旧] {subject} {state}"),
    "FLAPPINGSTART": Template("フラッピング開始", "[X-MON 状態不安定] {subject} {state}"),
    "FLAPPINGSTOP": Template("フラッピング終了", "[X-MON 状態安定] {subject} {state}"),
    "FLAPPINGDISABLED": Template("フラッピング検知無効", "[X-MON 不安定検知無効] {subject}"),
    "DOWNTIMESTART": Template("ダウンタイム開始", "[X-MON 計画停止開始] {subject}"),
    "DOWNTIMEEND": Template("ダウンタイム終了", "[X-MON 計画停止終了] {subject}"),
    "DOWNTIMECANCELLED": Template("ダウンタイム取り消し", "[X-MON 計画停止取消] {subject}"),
    "CUSTOM": Template("カスタム通知", "[X-MON 通知] {subject} {state} {output}"),
}


def compose_for(templates: dict[str, Template], key: str, alert: Alert, custom_text: str = "") -> str:
    """The text of a notification of any type.

    PROBLEM uses the setting's template (or its custom text) and so does RECOVERY with a
    template, as X-MON does; every other type, and RECOVERY of a setting with a custom text
    (written for faults), gets the text of its type, so nobody hears 「障害が発生しました」 when
    a downtime starts.
    """
    kind = alert.notification_type.upper()
    if kind == "PROBLEM" or (kind == "RECOVERY" and key != CUSTOM):
        return compose(templates, key, alert, custom_text)
    others = SMS_OTHER if templates is SMS_TEMPLATES else CALL_OTHER
    return others.get(kind, others["CUSTOM"]).render(alert)


def template_choices(templates: dict[str, Template]) -> list[tuple[str, str]]:
    """(value, label) pairs for a メッセージの内容 select, 「内容を指定する」 last."""
    return [(key, t.label) for key, t in templates.items()] + [(CUSTOM, "内容を指定する")]


def samples(templates: dict[str, Template]) -> dict[str, str]:
    """Each template rendered from the sample alert, for the (?) icon."""
    alert = sample_alert()
    return {key: t.render(alert) for key, t in templates.items()}


# --- 再生メッセージ置き換え設定 (R6) ---


class ReplacementError(ValueError):
    """Bad lines; .errors holds one Japanese message per bad line."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Replacements:
    """Parsed `word,reading` pairs, applied longest word first."""

    pairs: tuple[tuple[str, str], ...] = ()
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Replacements:
        """Parse lines of `word,reading`; blank lines are ignored; raise ReplacementError."""
        pairs: list[tuple[str, str]] = []
        errors: list[str] = []
        seen: dict[str, int] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line:
                continue
            parts = line.split(",")
            if len(parts) != 2:
                errors.append(f"{number}行目: 「単語,読み方」のように半角カンマ 1 つで区切って入力してください。")
                continue
            word, reading = parts[0].strip(), parts[1].strip()
            if not word or not reading:
                errors.append(f"{number}行目: 単語と読み方の両方を入力してください。")
                continue
            if word in seen:
                errors.append(f"{number}行目: 単語「{word}」は{seen[word]}行目と重複しています。")
                continue
            seen[word] = number
            pairs.append((word, reading))
        if errors:
            raise ReplacementError(errors)
        return cls.of(pairs)

    @classmethod
    def of(cls, pairs: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> Replacements:
        """Build from pairs, compiling one alternation with longer words first."""
        ordered = sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)
        pattern = re.compile("|".join(re.escape(word) for word, _ in ordered)) if ordered else None
        return cls(tuple(pairs), pattern)

    def apply(self, text: str) -> str:
        """Replace every word by its reading in one pass, so readings are never replaced again."""
        if self._pattern is None:
            return text
        readings = dict(self.pairs)
        return self._pattern.sub(lambda match: readings[match.group(0)], text)


# --- SMS segments ---

# GSM 03.38 basic character set and its extension table (extension characters take two septets).
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def sms_segments(text: str) -> int:
    """How many SMS segments Twilio bills for text (GSM-7: 160/153, UCS-2: 70/67)."""
    if not text:
        return 0
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text):
        units = sum(2 if c in _GSM_EXTENDED else 1 for c in text)
        single, multi = 160, 153
    else:
        # UCS-2 counts UTF-16 code units: characters outside the BMP (emoji) take two.
        units = len(text.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if units <= single else -(-units // multi)
