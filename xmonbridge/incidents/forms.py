"""インシデント's search form (GET, no CSRF token: it changes nothing)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from wtforms import DateField, SelectChoice, SelectField, StringField
from wtforms.validators import Length, Optional, ValidationError

from ..extensions import db
from ..forms import BaseForm, strip
from ..logs.forms import INVALID_DATE, _in_range, _utc_start_of
from ..models import (
    SETTING_BUTTON_CALL,
    SETTING_SIMPLE_CALL,
    SETTING_SMS,
    AlertRecord,
    ButtonCallSetting,
    SimpleCallSetting,
    SmsSetting,
)
from .summary import setting_label


def _setting_value(setting_type: str, setting_id: int) -> str:
    return f"{setting_type}:{setting_id}"


def _alerted_settings() -> list[tuple[str, int]]:
    """Every (setting_type, setting_id) alerts were received for, by skipping along ix_alerts_setting.

    One index seek per setting instead of a GROUP BY that reads every alert: the list is built on
    each インシデント page, and a year of alerts can be a million rows.
    """
    found: list[tuple[str, int]] = []
    setting_type = db.session.scalar(select(func.min(AlertRecord.setting_type)))
    while setting_type is not None:
        setting_id = db.session.scalar(
            select(func.min(AlertRecord.setting_id)).where(AlertRecord.setting_type == setting_type)
        )
        while setting_id is not None:
            found.append((setting_type, setting_id))
            setting_id = db.session.scalar(
                select(func.min(AlertRecord.setting_id)).where(
                    AlertRecord.setting_type == setting_type, AlertRecord.setting_id > setting_id
                )
            )
        setting_type = db.session.scalar(
            select(func.min(AlertRecord.setting_type)).where(AlertRecord.setting_type > setting_type)
        )
    return found


def setting_choices() -> list[SelectChoice]:
    """Every setting alerts were received for (kept after a deletion) and every current one."""
    names: dict[tuple[str, int], str] = {}
    current: tuple[tuple[str, type[SimpleCallSetting] | type[SmsSetting] | type[ButtonCallSetting]], ...] = (
        (SETTING_SIMPLE_CALL, SimpleCallSetting),
        (SETTING_BUTTON_CALL, ButtonCallSetting),
        (SETTING_SMS, SmsSetting),
    )
    for setting_type, model in current:
        for setting_id, name in db.session.execute(select(model.id, model.name)):
            names[(setting_type, setting_id)] = name
    for setting_type, setting_id in _alerted_settings():
        if (setting_type, setting_id) not in names:
            # A deleted setting: a name it had when one of its alerts came.
            names[(setting_type, setting_id)] = db.session.scalar(
                select(AlertRecord.setting_name)
                .where(AlertRecord.setting_type == setting_type, AlertRecord.setting_id == setting_id)
                .limit(1)
            ) or ""
    ordered = sorted(names.items(), key=lambda item: (item[0][0], item[1], item[0][1]))
    return [SelectChoice(_setting_value(t, i), setting_label(t, name)) for (t, i), name in ordered]


class IncidentFilterForm(BaseForm):
    """設定, ホスト, 期間; every field optional."""

    class Meta:
        csrf = False

    setting = SelectField("設定", default="")
    host = StringField("ホスト", validators=[Length(max=255)], filters=[strip], description="ホスト名の一部で検索します。")
    start = DateField("期間 開始日", validators=[Optional(), _in_range], invalid_value_message=INVALID_DATE)
    end = DateField("期間 終了日", validators=[Optional(), _in_range], invalid_value_message=INVALID_DATE)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setting.choices = [SelectChoice("", "すべて"), *setting_choices()]

    def validate_end(self, field: DateField) -> None:
        """Refuse a period that ends before it starts."""
        if field.data and self.start.data and field.data < self.start.data:
            raise ValidationError("終了日は開始日と同じか、それより後の日付を入力してください。")

    def conditions(self) -> list[ColumnElement[bool]]:
        """The WHERE clauses of the validated filters; dates are whole JST days."""
        where: list[ColumnElement[bool]] = []
        if self.setting.data:
            setting_type, _, setting_id = self.setting.data.partition(":")
            where += [AlertRecord.setting_type == setting_type, AlertRecord.setting_id == int(setting_id)]
        if self.host.data:
            where.append(AlertRecord.host.icontains(self.host.data, autoescape=True))
        if self.start.data:
            where.append(AlertRecord.received_at >= _utc_start_of(self.start.data))
        if self.end.data:
            where.append(AlertRecord.received_at < _utc_start_of(self.end.data + timedelta(days=1)))
        return where
