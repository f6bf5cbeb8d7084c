"""Webhook views: status callbacks (callbacks.py) and button calls (voice.py); each answers at once."""

from __future__ import annotations

from flask import Response, request

from ..extensions import db
from . import bp, callbacks, voice


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


def _button_webhook(kind: str, token: str) -> Response:
    answer = voice.receive(
        kind,
        token,
        request.form,
        request.headers.get(callbacks.SIGNATURE_HEADER),
        request.query_string.decode("latin-1"),
    )
    db.session.commit()
    if not answer.twiml:
        return Response(status=answer.status)
    return Response(answer.twiml, status=answer.status, mimetype="text/xml")


@bp.route("/voice/<token>", methods=["POST"])
def voice_answer(token: str) -> Response:
    """A button call was answered: its TwiML (greeting, summary, key guide)."""
    return _button_webhook(voice.VOICE, token)


@bp.route("/gather/<token>", methods=["POST"])
def voice_gather(token: str) -> Response:
    """Keys pressed in a button call (or none within 30 s): what to say next."""
    return _button_webhook(voice.GATHER, token)


@bp.route("/amd/<token>", methods=["POST"])
def voice_amd(token: str) -> Response:
    """Answering-machine detection's result for a button call (204)."""
    return _button_webhook(voice.AMD, token)
