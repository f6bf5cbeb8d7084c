"""The ログ screen's search form (GET, no CSRF token: it changes nothing)."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, select
from wtforms import DateField, SelectChoice, SelectField, StringField
from wtforms.validators import Length, Optional, ValidationError

from ..extensions import db
from ..filters import JST
from ..forms import BaseForm, strip
from ..models import LOG_KINDS, STATUS_APPROVED, PendingChange, RequestLog, TwilioAccount
from ..twilio_accounts.kind import KIND as ACCOUNT_KIND

RESULT_SUCCESS = "success"
RESULT_FAILURE = "failure"
INVALID_DATE = "日付は YYYY-MM-DD の形式で入力してください。"


def _utc_start_of(day: date) -> datetime:
    """00:00 JST of day, as the naive UTC the columns store."""
    return datetime.combine(day, time.min, JST).astimezone(timezone.utc).replace(tzinfo=None)


FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2100, 12, 31)


def _in_range(_form: Any, field: DateField) -> None:
    """Refuse dates that would overflow once shifted from JST to UTC (0001-01-01, 9999-12-31)."""
    if field.data and not FIRST_DAY <= field.data <= LAST_DAY:
        raise ValidationError("日付は 2000-01-01 から 2100-12-31 の範囲で入力してください。")


def _account_names() -> list[str]:
    """Names of current accounts and every name an account had (kept after a rename or deletion).

    Every name went through approval, so the approved changes of accounts hold them all; reading
    them from the log instead would read every ログ row on each page (no index on the name).
    """
    names = set(db.session.scalars(select(TwilioAccount.name)))
    names.update(
        db.session.scalars(
            select(PendingChange.target_name)
            .where(PendingChange.kind == ACCOUNT_KIND.key, PendingChange.status == STATUS_APPROVED)
            .distinct()
        )
    )
    return sorted(name for name in names if name)


class LogFilterForm(BaseForm):
    """種別, Twilio アカウント, 設定, 結果, 期間, 宛先; every field optional."""

    class Meta:
        csrf = False

    kind = SelectField("種別", default="")
    account = SelectField("Twilio アカウント", default="")
    setting = StringField("設定", validators=[Length(max=128)], filters=[strip], description="名称の一部で検索します。")
    result = SelectField(
        "結果",
        default="",
        choices=[SelectChoice("", "すべて"), SelectChoice(RESULT_SUCCESS, "成功"), SelectChoice(RESULT_FAILURE, "失敗")],
    )
    start = DateField("期間 開始日", validators=[Optional(), _in_range], invalid_value_message=INVALID_DATE)
    end = DateField("期間 終了日", validators=[Optional(), _in_range], invalid_value_message=INVALID_DATE)
    destination = StringField(
        "宛先",
        validators=[Length(max=32)],
        filters=[strip],
        description="+81-90-0123-0001 のように国番号から、または番号の一部で検索します。",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind.choices = [SelectChoice("", "すべて")] + [SelectChoice(k, v) for k, v in LOG_KINDS.items()]
        self.account.choices = [SelectChoice("", "すべて")] + [SelectChoice(n) for n in _account_names()]

    def validate_end(self, field: DateField) -> None:
        """Refuse a period that ends before it starts."""
        if field.data and self.start.data and field.data < self.start.data:
            raise ValidationError("終了日は開始日と同じか、それより後の日付を入力してください。")

    def validate_destination(self, field: StringField) -> None:
        """Accept digits with an optional leading +, hyphens, spaces and parentheses."""
        if field.data and not re.fullmatch(r"\+?[0-9()\- ]*[0-9][0-9()\- ]*", field.data):
            raise ValidationError("宛先は電話番号(数字、+、-)で入力してください。")

    def conditions(self) -> list[ColumnElement[bool]]:
        """The WHERE clauses of the validated filters; dates are whole JST days."""
        where: list[ColumnElement[bool]] = []
        if self.kind.data:
            where.append(RequestLog.kind == self.kind.data)
        if self.account.data:
            where.append(RequestLog.account_name == self.account.data)
        if self.setting.data:
            where.append(RequestLog.setting_name.contains(self.setting.data, autoescape=True))
        if self.result.data:
            where.append(RequestLog.success.is_(self.result.data == RESULT_SUCCESS))
        if self.start.data:
            where.append(RequestLog.created_at >= _utc_start_of(self.start.data))
        if self.end.data:
            where.append(RequestLog.created_at < _utc_start_of(self.end.data + timedelta(days=1)))
        if self.destination.data:
            # Destinations are stored in E.164 (+819001230001): compare the digits only.
            where.append(RequestLog.destination.contains(re.sub(r"\D", "", self.destination.data)))
        return where
