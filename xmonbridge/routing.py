"""URL rules: ids in URLs stay within what the database can hold."""

from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter, Map

# SQLite (and most databases) store integer ids as signed 64-bit numbers.
MAX_ID = 2**63 - 1


class IdConverter(IntegerConverter):
    """`<int:...>` that matches 0..2**63-1 only: a larger number is a 404, not an
    OverflowError from the database driver (a 500)."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def init_app(app: Flask) -> None:
    """Replace the `int` converter of every route; call before blueprints are registered."""
    app.url_map.converters["int"] = IdConverter
