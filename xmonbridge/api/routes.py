"""POST /api/v1/alerts: JSON or form-encoded; answers JSON only (see alerts/intake.py)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from flask import current_app, request
from sqlalchemy import select, update
from werkzeug.wrappers import Response

from ..alerts import intake
from ..extensions import csrf, db
from ..models import ApiToken, utcnow
from . import bp

# The last use of a token is written at most this often (keeps the hot path to one commit).
LAST_USED_EVERY = timedelta(minutes=1)
UNAUTHORIZED = "API トークンがないか、正しくないか、無効化されています。"
UNREADABLE = "本文を読めません。Content-Type を application/json か application/x-www-form-urlencoded にしてください。"


def _with_status(payload: dict[str, Any], status: int) -> Response:
    response = current_app.json.response(payload)
    response.status_code = status
    return response


def _token() -> ApiToken | None:
    """The valid token of the request's `Authorization: Bearer …`, or None."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    digest = hashlib.sha256(secret.strip().encode()).hexdigest()
    return db.session.scalar(select(ApiToken).where(ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None)))


def _note_use(token: ApiToken) -> None:
    now = utcnow()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_EVERY:
        return
    db.session.execute(
        update(ApiToken)
        .where(ApiToken.id == token.id)
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


@bp.post("/alerts")
@csrf.exempt
def post_alert() -> Response:
    """Accept one alert: 202 with its id (the first one's for a repeat), or the problems."""
    request.max_content_length = int(current_app.config["API_MAX_CONTENT_LENGTH"])
    token = _token()
    if token is None:
        response = _with_status({"errors": [{"field": "Authorization", "message": UNAUTHORIZED}]}, 401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="xmonbridge"'
        return response
    if request.is_json:
        # get_json raises 413 (RequestEntityTooLarge) itself for an oversized body.
        values = request.get_json(silent=True)
        if not isinstance(values, dict):
            return _with_status({"errors": [{"field": "", "message": "JSON のオブジェクトを送ってください。"}]}, 400)
    else:
        form = request.form
        repeated = [name for name in form if len(form.getlist(name)) > 1]
        if repeated:
            problems = [{"field": name, "message": f"{name}: 1 回だけ指定してください。"} for name in repeated]
            return _with_status({"errors": problems}, 400)
        values = form.to_dict()
        if not values and request.get_data(cache=True):
            return _with_status({"errors": [{"field": "", "message": UNREADABLE}]}, 400)
    _note_use(token)
    try:
        accepted = intake.accept(values, token)
    except intake.IntakeError as error:
        db.session.rollback()
        return _with_status({"errors": error.problems}, 400)
    except intake.UnknownSetting as error:
        db.session.rollback()
        return _with_status({"errors": error.problems}, 404)
    return _with_status({"id": accepted.alert_id, "duplicate": accepted.duplicate}, 202)
