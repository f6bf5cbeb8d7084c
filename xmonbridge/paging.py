"""Pages of long lists (ログ, インシデント) that stay fast with a million rows.

A page is LIMIT/OFFSET over the list's index (newest first), and its rows count only up to
COUNT_AHEAD rows past the page's start: counting every row that matches a filter would read
them all on each page. The pager then says 「1–50 件(全 1000 件以上)」 instead of an exact total,
and 次へ is offered while rows are left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, literal_column, select

from .extensions import db

# Rows counted beyond the start of the page shown.
COUNT_AHEAD = 1000
# ?page= is clamped here: a huge page number would overflow SQLite's integer offset.
MAX_PAGE = 1_000_000


@dataclass(frozen=True)
class Page:
    """One page of a list, with what the pager shows (the attributes of Flask-SQLAlchemy's Pagination)."""

    items: list[Any]
    page: int
    per_page: int
    # Rows matching, or at least this many when capped.
    total: int
    capped: bool

    @property
    def first(self) -> int:
        return (self.page - 1) * self.per_page + 1 if self.items else 0

    @property
    def last(self) -> int:
        return self.first + len(self.items) - 1 if self.items else 0

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def prev_num(self) -> int | None:
        return self.page - 1 if self.has_prev else None

    @property
    def has_next(self) -> bool:
        return self.capped or self.page * self.per_page < self.total

    @property
    def next_num(self) -> int | None:
        return self.page + 1 if self.has_next else None


def clamp(page: int | None) -> int:
    """A usable page number: a missing, bad or negative one is the first, a huge one MAX_PAGE."""
    return min(max(page or 1, 1), MAX_PAGE)


def paginate(stmt: Select[Any], page: int, per_page: int) -> Page:
    """One page of stmt (ordered by the caller) and a count of its rows capped past the page."""
    offset = (page - 1) * per_page
    items = list(db.session.scalars(stmt.limit(per_page).offset(offset)))
    limit = offset + COUNT_AHEAD + 1
    # Only the FROM and WHERE of stmt: no ORDER BY, no columns, so an index can answer alone.
    rows: Select[Any] = select(literal_column("1")).select_from(*stmt.get_final_froms())
    if stmt.whereclause is not None:
        rows = rows.where(stmt.whereclause)
    counted = db.session.scalar(select(func.count()).select_from(rows.limit(limit).subquery())) or 0
    capped = counted >= limit
    return Page(items=items, page=page, per_page=per_page, total=counted - 1 if capped else counted, capped=capped)
