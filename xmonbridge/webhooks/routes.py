"""Status callback view: hands the request to callbacks.receive_status and answers at once."""

from __future__ import annotations

from flask import Response, request

from ..extensions import db
from . import bp, callbacks


@bp.route("/status/<token>", methods=["POST"])
def status(token: str) -> Response:
    """Record the status Twilio reports for one attempt (204), or refuse it (403/404)."""
    code = callbacks.receive_status(
        token,
        request.form,
        request.headers.get(callbacks.SIGNATURE_HEADER),
        request.query_string.decode("latin-1"),
    )
    db.session.commit()
    return Response(status=code)
