"""What a button call says (R8, R9): plain text, replacements applied, no TwiML.

The callee hears the user's 着信直後に流すメッセージ, a summary of the faults and recoveries,
and the key guide; 1# and 7# read the details, at most MAX_DETAILS of each then 「ほか N 件」.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..messages import Replacements
from ..models import AlertRecord

# Details read per 1# / 7#; the rest is counted ("ほか N 件").
MAX_DETAILS = 10
# Plugin output read per alert.
MAX_OUTPUT = 120

SUMMARY = "障害が{faults}件、復旧が{recoveries}件あります。"
NOTHING = "現在、お知らせする障害と復旧はありません。"
GUIDE_ALL = (
    "障害の詳細は1と#、復旧の詳細は7と#、もう一度お聞きになるには8と#、"
    "通話を終了するには9と#を押してください。"
)
GUIDE_ROTATION = (
    "障害の詳細は1と#、復旧の詳細は7と#、もう一度お聞きになるには8と#、"
    "次の担当者に通知するには2と#、障害を認知済みにして通知を終えるには3と#、"
    "通話を終了するには9と#を押してください。"
)
INVALID = "無効な操作です。"
NO_INPUT = "ボタン操作が確認できなかったため、通話を終了します。"
LATE_FAULTS = "この通話の間に新しい障害が{count}件届いたため、あらためて通知します。"
GOODBYE = "通話を終了します。"
PASSING = "次の担当者に通知します。"
ACKNOWLEDGED = "{count}件の障害を認知済みにしました。以降の担当者には通知しません。"
NOTHING_TO_ACK = "認知済みにする障害はありません。以降の担当者には通知しません。"
TEST_ACK = "テスト通話のため、監視には認知済みを送りません。"
RESOLVED = "すべての障害が復旧、または認知済みになったため、通知を終了します。"
ENDED = "この通知はすでに終了しています。"
NO_FAULTS = "障害はありません。"
NO_RECOVERIES = "復旧はありません。"
MORE = "ほか{count}件の{what}があります。"


def subject(alert: AlertRecord) -> str:
    """「ホスト web01 のサービス HTTP」 or 「ホスト web01」."""
    if alert.service:
        return f"ホスト {alert.host} のサービス {alert.service}"
    return f"ホスト {alert.host}"


def summary(faults: int, recoveries: int) -> str:
    """「障害が3件、復旧が1件あります。」"""
    if not faults and not recoveries:
        return NOTHING
    return SUMMARY.format(faults=faults, recoveries=recoveries)


def guide(rotation: bool) -> str:
    """The key guide: only the keys valid in this mode (2# and 3# only in 輪番通知)."""
    return GUIDE_ROTATION if rotation else GUIDE_ALL


def _output(alert: AlertRecord) -> str:
    text = " ".join((alert.output or "").split())
    return text if len(text) <= MAX_OUTPUT else text[:MAX_OUTPUT] + "、以下省略"


def fault_details(alerts: Sequence[AlertRecord]) -> str:
    """1#: each fault's host, service, state and output."""
    return _details(alerts, "障害", NO_FAULTS, lambda a: f"{subject(a)}が{a.state or '障害'}です。")


def recovery_details(alerts: Sequence[AlertRecord]) -> str:
    """7#: each recovery."""
    return _details(alerts, "復旧", NO_RECOVERIES, lambda a: f"{subject(a)}が{a.state or '正常'}に復旧しました。")


def _details(alerts: Sequence[AlertRecord], what: str, none: str, line) -> str:  # type: ignore[no-untyped-def]
    if not alerts:
        return none
    parts = []
    for number, alert in enumerate(alerts[:MAX_DETAILS], start=1):
        output = _output(alert)
        parts.append(f"{what}{number}件目。{line(alert)}" + (f"詳細、{output}。" if output else ""))
    if len(alerts) > MAX_DETAILS:
        parts.append(MORE.format(count=len(alerts) - MAX_DETAILS, what=what))
    return "\n".join(parts)


def spoken(texts: Sequence[str], replacements: Replacements) -> list[str]:
    """The non-empty texts, each through the button-call replacements."""
    return [replacements.apply(text) for text in texts if text and text.strip()]
