"""Queue work for the dispatcher directly, and a clock tests move by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

from xmonbridge.extensions import db
from xmonbridge.models import (
    CHANNEL_CALL,
    CHANNEL_SMS,
    SETTING_SIMPLE_CALL,
    SETTING_SMS,
    AlertRecord,
    Delivery,
    Notification,
    SimpleCallSetting,
    SmsSetting,
    utcnow,
)
from xmonbridge.simple_call import fit_bin_call


class FakeClock:
    """Starts at the real time (the fake Twilio stamps calls with it) and moves only when told."""

    def __init__(self) -> None:
        self.moment = utcnow()

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


def queue(setting: SimpleCallSetting | SmsSetting, text: str = "X-MON からの障害通知です。", at: datetime | None = None) -> Notification:
    """An alert for setting with one queued delivery per recipient, as intake stores it."""
    call = isinstance(setting, SimpleCallSetting)
    kind = SETTING_SIMPLE_CALL if call else SETTING_SMS
    alert = AlertRecord(
        setting_type=kind,
        setting_id=setting.id,
        setting_name=setting.name,
        notification_type="PROBLEM",
        host="web-server01",
        service="HTTP",
        state="CRITICAL",
    )
    notification = Notification(
        alert=alert,
        channel=CHANNEL_CALL if call else CHANNEL_SMS,
        setting_type=kind,
        setting_id=setting.id,
        setting_name=setting.name,
        account_id=setting.account_id,
        account_name=setting.account.name,
        from_number=setting.from_number,
        text=text,
        url=fit_bin_call(setting.account.twiml_bin_url or "", text).url if call else "",
        ring_seconds=setting.ring_seconds if call else None,
    )
    for position, recipient in enumerate(setting.recipients):
        notification.deliveries.append(
            Delivery(
                user_id=recipient.user_id,
                user_name=recipient.user.display_name,
                to_number=recipient.user.phone or "",
                position=position,
                next_at=at or utcnow() - timedelta(seconds=1),
            )
        )
    db.session.add(alert)
    db.session.commit()
    return notification
