"""Phone numbers: parse what admins type, store E.164, show with hyphens."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

NEED_COUNTRY_CODE = (
    "電話番号は国番号から入力してください(例: 090-0123-xxxx は +81-90-0123-xxxx、"
    "03-1234-xxxx は +81-3-1234-xxxx)。"
)
INVALID_NUMBER = "電話番号の形式が正しくありません(例: +81-90-0123-xxxx)。"


class PhoneNumberError(ValueError):
    """A number that cannot be stored; str() is the Japanese message for the form."""


def to_e164(text: str) -> str:
    """Parse a number typed with its country code into E.164, or raise PhoneNumberError."""
    text = text.strip()
    if not text.startswith("+"):
        raise PhoneNumberError(NEED_COUNTRY_CODE)
    try:
        number = phonenumbers.parse(text, None)
    except NumberParseException as exc:
        raise PhoneNumberError(INVALID_NUMBER) from exc
    # is_possible rather than is_valid: test ranges such as +81-90-0123-xxxx are
    # not allocated yet, and the manual uses them as its examples.
    if not phonenumbers.is_possible_number(number):
        raise PhoneNumberError(INVALID_NUMBER)
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def display(e164: str | None) -> str:
    """Format an E.164 number as the manual writes it: +81-90-0123-0001."""
    if not e164:
        return ""
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return e164
    return phonenumbers.format_number(number, PhoneNumberFormat.RFC3966).removeprefix("tel:")


def mask(e164: str | None) -> str:
    """Show a number with its middle hidden, for audit lists: +81-**-****-0001."""
    shown = display(e164)
    if not shown:
        return ""
    groups = shown.split("-")
    if len(groups) < 3:
        # No national grouping known: keep the country code and the last four digits.
        digits = shown.lstrip("+")
        return "+" + "*" * max(len(digits) - 4, 0) + digits[-4:]
    return "-".join([groups[0], *("*" * len(g) for g in groups[1:-2]), "*" * len(groups[-2]), groups[-1]])


def is_mobile(e164: str | None) -> bool:
    """Tell whether SMS may reach a number: False only for a number of a known other type.

    A landline, IP phone (050), toll-free or premium number is not a mobile; a number whose
    type phonenumbers cannot tell (a new range, an unusual format) gets the benefit of the doubt.
    """
    if not e164:
        return False
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return False
    return phonenumbers.number_type(number) in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
        phonenumbers.PhoneNumberType.UNKNOWN,
    )
