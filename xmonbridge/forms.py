"""Form base class with Japanese built-in messages, and fields shared by screens."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask_wtf import FlaskForm
from wtforms import Field, SubmitField
from wtforms.validators import ValidationError

from . import phone


class BaseForm(FlaskForm):
    """Every form of xmonbridge: WTForms' own messages in Japanese."""

    class Meta:
        locales = ["ja"]


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
