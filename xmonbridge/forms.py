"""Form base class with Japanese built-in messages, and fields shared by screens."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from flask_wtf import FlaskForm
from wtforms import Field, FieldList, FormField, SubmitField
from wtforms.validators import ValidationError
from wtforms.widgets import TextArea

from . import phone

CONTROL_CHARACTERS = "制御文字は使用できません。"
# Characters that reorder how text is displayed (U+202E shows "exe.txt" for "txt.exe") or
# that break a single line; they are never typed on purpose.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Invisible characters that make two names look the same (a zero-width space, a stray BOM).
INVISIBLE = frozenset("\u200b\ufeff")
LINE_SEPARATORS = frozenset("\u2028\u2029")
# What a multi-line field (TextAreaField) may contain of category Cc.
MULTI_LINE_CONTROLS = frozenset("\t\n\r")


def _not_a_character(char: str) -> bool:
    """Surrogates and Unicode noncharacters (U+FFFE, U+FFFF, …): XML, so TwiML, cannot carry them."""
    point = ord(char)
    return unicodedata.category(char) == "Cs" or point & 0xFFFE == 0xFFFE or 0xFDD0 <= point <= 0xFDEF


def _refused_character(char: str, multi_line: bool) -> bool:
    if char in BIDI_CONTROLS or char in INVISIBLE or _not_a_character(char):
        return True
    if multi_line:
        return char not in MULTI_LINE_CONTROLS and unicodedata.category(char) == "Cc"
    return char in LINE_SEPARATORS or unicodedata.category(char) == "Cc"


def has_control_characters(text: str, multi_line: bool = False) -> bool:
    """Tell whether text holds a control character (Cc), a bidi control or, on one line, a line break.

    Multi-line text may keep tabs and line breaks (\\t, \\n, \\r), nothing else of Cc.
    """
    return any(_refused_character(char, multi_line) for char in text)


def remove_control_characters(text: str, multi_line: bool = False) -> str:
    """Text without what has_control_characters() refuses."""
    return "".join(char for char in text if not _refused_character(char, multi_line))


def _without(value: Any, multi_line: bool) -> Any:
    return remove_control_characters(value, multi_line) if isinstance(value, str) else value


def _input_fields(fields: Any) -> Iterator[Field]:
    """Every field that receives input, inside lists (FieldList) and sub-forms too."""
    for field in fields:
        if isinstance(field, FieldList):
            yield from _input_fields(field.entries)
        elif isinstance(field, FormField):
            yield from _input_fields(field.form)
        else:
            yield field


class BaseForm(FlaskForm):
    """Every form of xmonbridge: WTForms' own messages in Japanese, no control characters."""

    class Meta:
        locales = ["ja"]

    def validate(self, extra_validators: Any = None) -> bool:
        """Validate; refuse control characters in what was typed, in every field of every form.

        The raw input is checked, before filters such as strip() hide a trailing line break.
        A refused field shows only that message: its other checks saw text nobody meant.
        """
        refused = []
        for field in _input_fields(self):
            multi_line = isinstance(field.widget, TextArea)
            raw = field.raw_data or []
            if any(isinstance(value, str) and has_control_characters(value, multi_line) for value in raw):
                refused.append(field)
        ok = super().validate(extra_validators)
        for field in refused:
            field.errors = [CONTROL_CHARACTERS]
            # Shown again without them (fields render data, or raw_data when it did not
            # convert): the page never echoes a NUL or a bidi override back.
            multi_line = isinstance(field.widget, TextArea)
            field.raw_data = [_without(value, multi_line) for value in field.raw_data or []]
            field.data = _without(field.data, multi_line)
        return ok and not refused


class EmptyForm(BaseForm):
    """A POST button (削除, 承認, 却下, ログアウト) carrying only the CSRF token."""

    submit = SubmitField("実行")


def strip(value: Any) -> Any:
    """Filter: trim surrounding blanks of text input."""
    return value.strip() if isinstance(value, str) else value


def blank_to_none(value: Any) -> Any:
    """Filter: store an empty optional text as NULL."""
    return value or None


class PhoneNumber:
    """Validator: a number with its country code; the field's data becomes E.164."""

    def __call__(self, form: FlaskForm, field: Field) -> None:
        if not field.data:
            return
        try:
            field.data = phone.to_e164(field.data)
        except phone.PhoneNumberError as exc:
            raise ValidationError(str(exc)) from exc


class HttpUrl:
    """Validator: an absolute http(s) URL with a host, no query or fragment (optional https only)."""

    def __init__(self, https_only: bool = False, allow_query: bool = False) -> None:
        self.https_only = https_only
        self.allow_query = allow_query

    def __call__(self, form: FlaskForm, field: Field) -> None:
        if not field.data:
            return
        try:
            parts = urlsplit(field.data)
            port = parts.port  # raises ValueError on a bad port
        except ValueError as exc:
            raise ValidationError("URL の形式が正しくありません。") from exc
        schemes = ("https",) if self.https_only else ("http", "https")
        if parts.scheme not in schemes:
            raise ValidationError(
                "https:// で始まる URL を入力してください。"
                if self.https_only
                else "http:// または https:// で始まる URL を入力してください。"
            )
        if not parts.hostname or " " in field.data or port == 0:
            raise ValidationError("URL にホスト名を入力してください。")
        if not self.allow_query and (parts.query or parts.fragment or "?" in field.data or "#" in field.data):
            raise ValidationError("URL にクエリ(?…)やフラグメント(#…)は含められません。")
