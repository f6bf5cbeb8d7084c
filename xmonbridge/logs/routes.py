"""ログ views: the request log (一覧, 詳細) and the calls and messages of simulate mode."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import current_app, render_template, request
from sqlalchemy import Select, false, select

from ..access import admin_required
from ..extensions import db
from ..models import LOG_KINDS, RequestLog, SimulatedMessage
from ..paging import Page, clamp, paginate
from ..telephony import CREATE_KINDS, SHORTENED_FROM
from ..twilio_errors import explain_logged
from . import bp
from .entries import ALL_SETTING_TYPES, LOCAL_KINDS, RECEIVED_KINDS, facts, notes, received, summary_of
from .forms import LogFilterForm
from .guide import error_help, kind_help

CHANNELS = {"call": "電話", "sms": "SMS"}


def _paginate(stmt: Select[Any]) -> Page:
    """One page of stmt; a missing or bad ?page= shows the first page, one past the end no rows."""
    return paginate(stmt, clamp(request.args.get("page", 1, type=int)), current_app.config["PAGE_SIZE"])


def spoken_message(url: str) -> str:
    """The text a TwiML Bin call speaks: the decoded `message` parameter of its Url."""
    return parse_qs(urlsplit(url).query).get("message", [""])[0]


@bp.route("/")
@admin_required
def index() -> str:
    """List requests to Twilio, most recent first, filtered by the search form."""
    form = LogFilterForm(formdata=request.args)
    stmt = select(RequestLog).order_by(RequestLog.created_at.desc(), RequestLog.id.desc())
    stmt = stmt.where(*form.conditions()) if form.validate() else stmt.where(false())
    # Paging links carry the search as it was typed.
    search = {key: value for key, value in request.args.items() if key != "page" and value}
    pagination = _paginate(stmt)
    # Failures without an answer from Twilio are logged as short markers ("timeout" …): listed in Japanese.
    listed = {
        row.id: str(error)
        for row in pagination.items
        if row.http_status is None
        and row.error_message
        and row.kind not in RECEIVED_KINDS | LOCAL_KINDS
        and (error := explain_logged(None, None, row.error_message, create=row.kind in CREATE_KINDS)) is not None
    }
    return render_template(
        "logs/index.html",
        form=form,
        pagination=pagination,
        search=search,
        kinds=LOG_KINDS,
        notes={row.id: notes(row) for row in pagination.items},
        listed_errors=listed,
        error_help=error_help(),
        kind_help=kind_help(),
    )


@bp.route("/<int:log_id>")
@admin_required
def show(log_id: int) -> str:
    """Show one request with what was asked of Twilio (or what a webhook brought) and why it failed."""
    row = db.get_or_404(RequestLog, log_id)
    asked = summary_of(row)
    summary = json.dumps(asked, ensure_ascii=False, indent=2, sort_keys=True) if asked else row.request_summary
    callback = received(row, asked)
    explanation = None
    # A refused webhook says why in error_message, a held-back call or a failed acknowledgement
    # too: Twilio's request explanations do not apply to them.
    if row.kind not in RECEIVED_KINDS | LOCAL_KINDS and not row.success:
        create = row.kind in CREATE_KINDS
        explanation = explain_logged(row.http_status, row.error_code, row.error_message or "", create=create)
    shortened_from = asked.get(SHORTENED_FROM) if isinstance(asked, dict) else None
    return render_template(
        "logs/show.html",
        row=row,
        summary=summary,
        spoken=spoken_message(str(asked.get("Url", ""))),
        kinds=LOG_KINDS,
        setting_types=ALL_SETTING_TYPES,
        explanation=explanation,
        shortened_from=shortened_from if isinstance(shortened_from, int) else None,
        callback=callback,
        facts=facts(row, asked),
    )


@bp.route("/simulated")
@admin_required
def simulated() -> str:
    """List what simulate mode would have called or sent, most recent first."""
    # Newest first by id (ids follow time and are never reused): the primary key needs no sort.
    pagination = _paginate(select(SimulatedMessage).order_by(SimulatedMessage.id.desc()))
    rows = [(item, spoken_message(item.url) if item.channel == "call" else item.body) for item in pagination.items]
    return render_template("logs/simulated.html", pagination=pagination, rows=rows, channels=CHANNELS)
