"""Twilio 電話番号(From): the numbers an account owns, cached from Twilio with 再取得."""

from __future__ import annotations

from sqlalchemy import delete, select

from . import telephony
from .extensions import db
from .models import TwilioAccount, TwilioPhoneNumber, utcnow


def cached(account_id: int, *, voice: bool = False, sms: bool = False) -> list[TwilioPhoneNumber]:
    """The cached numbers of an account, only voice- or sms-capable ones when asked."""
    query = select(TwilioPhoneNumber).where(TwilioPhoneNumber.account_id == account_id)
    if voice:
        query = query.where(TwilioPhoneNumber.voice.is_(True))
    if sms:
        query = query.where(TwilioPhoneNumber.sms.is_(True))
    return list(db.session.scalars(query.order_by(TwilioPhoneNumber.phone_number)))


def was_read(account: TwilioAccount) -> bool:
    """Tell whether the account's numbers were read (since its credentials last changed)."""
    return account.numbers_fetched_at is not None


def refresh(account: TwilioAccount) -> None:
    """Read the numbers from Twilio and replace the cache; on TwilioError keep the old cache.

    The Twilio request is made before any write, so no SQLite write lock is held meanwhile;
    the caller commits.
    """
    numbers = telephony.list_numbers(account)  # raises TwilioError: cache untouched
    db.session.execute(delete(TwilioPhoneNumber).where(TwilioPhoneNumber.account_id == account.id))
    now = utcnow()
    # Marked even when the account owns no number, so the next request does not ask again.
    account.numbers_fetched_at = now
    for number in numbers:
        db.session.add(
            TwilioPhoneNumber(
                account_id=account.id,
                phone_number=number.phone_number,
                friendly_name=number.friendly_name,
                voice=number.voice,
                sms=number.sms,
                fetched_at=now,
            )
        )
    db.session.flush()


def forget(account: TwilioAccount) -> None:
    """Drop the cache, so the numbers are read again (from changed credentials) on next use."""
    db.session.execute(delete(TwilioPhoneNumber).where(TwilioPhoneNumber.account_id == account.id))
    account.numbers_fetched_at = None
