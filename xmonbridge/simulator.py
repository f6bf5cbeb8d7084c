"""The simulated Twilio of simulate mode: nothing leaves the machine.

It answers like Twilio (SIDs of the right shape, a few owned numbers) and records the
calls and messages it "placed" in simulated_messages, where the UI lists them.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from .extensions import db
from .models import SimulatedMessage, TwilioAccount, utcnow
from .telephony import CallState, OwnedNumber, Placed, explain

NUMBERS = (
    OwnedNumber("+815012340001", "シミュレーション番号 1(音声・SMS)", voice=True, sms=True),
    OwnedNumber("+815012340002", "シミュレーション番号 2(音声のみ)", voice=True, sms=False),
    OwnedNumber("+815012340003", "シミュレーション番号 3(SMS のみ)", voice=False, sms=True),
)


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


class Simulator:
    """A Backend (see telephony.Backend) that records instead of sending."""

    simulated = True

    def __init__(self, account: TwilioAccount) -> None:
        self.account_sid = account.account_sid

    def _record(self, **values: object) -> str:
        sid = str(values["sid"])
        # Own session, like the log: the record stays whatever the caller does next.
        with Session(db.engine) as session:
            session.add(SimulatedMessage(account_sid=self.account_sid, **values))
            session.commit()
        return sid

    def create_call(
        self,
        to: str,
        from_: str,
        url: str,
        timeout: int,
        status_callback: str | None = None,
        machine_detection_callback: str | None = None,
    ) -> str:
        return self._record(sid=_sid("CA"), channel="call", from_number=from_, to_number=to, url=url, timeout=timeout)

    def hang_up(self, sid: str) -> CallState:
        with Session(db.engine) as session:
            row = session.scalar(select(SimulatedMessage).where(SimulatedMessage.sid == sid))
            if row is None:
                raise explain(404, 20404)
            row.status = "completed"
            session.commit()
        return CallState(sid=sid, status="completed")

    def create_message(self, to: str, from_: str, body: str, status_callback: str | None = None) -> str:
        return self._record(sid=_sid("SM"), channel="sms", from_number=from_, to_number=to, body=body)

    def list_numbers(self) -> list[OwnedNumber]:
        return list(NUMBERS)

    def fetch_call(self, sid: str) -> CallState:
        row = db.session.scalar(select(SimulatedMessage).where(SimulatedMessage.sid == sid))
        if row is None:
            raise explain(404, 20404)
        status = row.status
        if row.channel == "call" and status == "queued" and row.timeout is not None:
            # Nobody answers a simulated phone (the phone simulator aside): the call rings out.
            if utcnow() - row.created_at > timedelta(seconds=row.timeout):
                status = "no-answer"
        return CallState(sid=sid, status=status)

    def fetch_message(self, sid: str) -> CallState:
        return self.fetch_call(sid)

    def find_calls(self, to: str, from_: str, after: datetime) -> list[Placed]:
        return self._find("call", to, from_, after)

    def find_messages(self, to: str, from_: str, after: datetime) -> list[Placed]:
        return self._find("sms", to, from_, after)

    def _find(self, channel: str, to: str, from_: str, after: datetime) -> list[Placed]:
        """What this account "placed" on channel from from_ to `to` since after, newest first."""
        rows = db.session.scalars(
            select(SimulatedMessage)
            .where(
                SimulatedMessage.account_sid == self.account_sid,
                SimulatedMessage.channel == channel,
                SimulatedMessage.to_number == to,
                SimulatedMessage.from_number == from_,
                SimulatedMessage.created_at >= after,
            )
            .order_by(SimulatedMessage.created_at.desc(), SimulatedMessage.id.desc())
        )
        return [Placed(r.sid, r.status, r.to_number, r.from_number, r.created_at) for r in rows]
