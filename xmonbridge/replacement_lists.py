"""再生メッセージ置き換え設定 (R6): one approved `word,reading` list per kind of call."""

from __future__ import annotations

from sqlalchemy import select

from .extensions import db
from .messages import Replacements
from .models import REPLACEMENT_BUTTON, REPLACEMENT_SIMPLE, ReplacementList

# What each list is for, as the 承認待ち list names it.
SCOPE_NAMES = {
    REPLACEMENT_SIMPLE: "通話設定(シンプル通話)",
    REPLACEMENT_BUTTON: "通話設定(ボタン操作付き)",
}

# The page that edits each list (§5.1.4, and §5.2.3's tab beside メッセージテンプレート).
EDIT_ENDPOINTS = {
    REPLACEMENT_SIMPLE: "simple_calls.replacements",
    REPLACEMENT_BUTTON: "message_templates.replacements",
}


def find(scope: str) -> ReplacementList | None:
    """The approved list of a scope, or None when it was never set."""
    return db.session.scalar(select(ReplacementList).where(ReplacementList.scope == scope))


def for_edit(scope: str) -> ReplacementList:
    """The list of a scope, created empty (and flushed, so it has an id) on first edit.

    An empty list replaces nothing, so creating it outside approval changes no behaviour.
    """
    row = find(scope)
    if row is None:
        row = ReplacementList(scope=scope, name=SCOPE_NAMES[scope], content="")
        db.session.add(row)
        db.session.flush()
    return row


def approved(scope: str) -> Replacements:
    """The approved replacements of a scope (content was validated before approval)."""
    row = find(scope)
    return Replacements.parse(row.content) if row is not None else Replacements()
