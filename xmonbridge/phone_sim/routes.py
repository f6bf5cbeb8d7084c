"""電話シミュレータ views: the page, its polled state (JSON), and what a phone's buttons do.

Simulate mode: the phones show the simulated calls and SMS (calls/simphone.py). Live mode:
nothing is simulated; the page rehearses a button-call setting's call (calls/rehearsal.py).
Every answer is JSON for the page's script (static/js/phone_simulator.js).
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, jsonify, render_template
from flask_wtf.csrf import generate_csrf
from werkzeug.wrappers import Response

from .. import phone as phone_numbers
from ..access import admin_required
from ..calls import rehearsal, simphone
from ..filters import jst
from ..forms import EmptyForm
from ..models import XmonSettings, utcnow
from . import bp
from .forms import KeysForm, RehearsalForm

NOT_NOW = "この通話ではその操作はできません(すでに終了したか、状態が変わりました)。"
NOT_A_RECIPIENT = "この通話設定はこのユーザに発信しません。"


def _simulated() -> bool:
    return bool(current_app.config["TWILIO_MODE"] == "simulate")


@bp.route("/")
@admin_required
def index() -> str:
    """Show every user's phone; in live mode, offer the button-call settings to rehearse."""
    simulated = _simulated()
    return render_template(
        "phone_sim/index.html",
        simulated=simulated,
        xmon_url=XmonSettings.get().xmon_url,
        rehearsable=[] if simulated else rehearsal.settings(),
    )


@bp.route("/state")
@admin_required
def state() -> Response:
    """The phones as JSON (polled by the page); settles rings and key waits whose time is over."""
    now = utcnow()
    if _simulated():
        found = simphone.phones(now)
    else:
        found = simphone.idle_phones()
    # A fresh CSRF token with every poll: the page stays open for hours waiting for a call,
    # longer than one token lives.
    response = jsonify(phones=[_phone_json(p) for p in found], csrf=generate_csrf())
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/calls/<int:call_id>/answer", methods=["POST"])
@admin_required
def answer(call_id: int) -> tuple[Response, int]:
    """応答: the phone picks up; Twilio fetches the call's TwiML."""
    return _act(lambda now: simphone.answer(call_id, now), EmptyForm())


@bp.route("/calls/<int:call_id>/keys", methods=["POST"])
@admin_required
def keys(call_id: int) -> tuple[Response, int]:
    """# on the keypad: the keys before it go to the call's <Gather>."""
    form = KeysForm()
    return _act(lambda now: simphone.press(call_id, form.keys.data or "", now), form)


@bp.route("/calls/<int:call_id>/hangup", methods=["POST"])
@admin_required
def hang_up(call_id: int) -> tuple[Response, int]:
    """切断: decline the ringing call, or end the call in progress."""
    return _act(lambda now: simphone.hang_up(call_id, now), EmptyForm())


@bp.route("/rehearsal/answer", methods=["POST"])
@admin_required
def rehearsal_answer() -> tuple[Response, int]:
    """Live mode: what the rehearsed call says when answered."""
    return _rehearse(with_keys=False)


@bp.route("/rehearsal/keys", methods=["POST"])
@admin_required
def rehearsal_keys() -> tuple[Response, int]:
    """Live mode: what the rehearsed call says after keys ending with #."""
    return _rehearse(with_keys=True)


def _act(action: Any, form: Any) -> tuple[Response, int]:
    if not _simulated():
        abort(404)
    if not form.validate_on_submit():
        return jsonify(error=_first_error(form)), 400
    now = utcnow()
    done = action(now)
    phones = simphone.phones(utcnow())
    body: dict[str, Any] = {"phones": [_phone_json(p) for p in phones]}
    if not done:
        body["error"] = NOT_NOW
    return jsonify(body), 200 if done else 409


def _rehearse(with_keys: bool) -> tuple[Response, int]:
    if _simulated():
        abort(404)
    form = RehearsalForm()
    if not form.validate_on_submit():
        return jsonify(error=_first_error(form)), 400
    step = rehearsal.play(form.setting_id.data, form.user_id.data, (form.keys.data or "") if with_keys else None, utcnow())
    if step is None:
        return jsonify(error=NOT_A_RECIPIENT), 404
    return (
        jsonify(lines=[_line_json(line) for line in step.lines], waiting_for_keys=step.waiting_for_keys, next_user_id=step.next_user_id),
        200,
    )


def _first_error(form: Any) -> str:
    for errors in form.errors.values():
        for error in errors:
            return str(error)
    return "入力内容を確認してください。"


def _line_json(line: simphone.Line) -> dict[str, str]:
    return {"kind": line.kind, "text": line.text, "voice": line.voice}


def _phone_json(found: simphone.Phone) -> dict[str, Any]:
    call = found.call
    return {
        "user_id": found.user_id,
        "name": found.name,
        "number": phone_numbers.display(found.number),
        "state": found.state,
        "state_label": simphone.STATE_LABELS[found.state],
        "call": None
        if call is None
        else {
            "id": call.id,
            "from": phone_numbers.display(call.from_number) if call.from_number.startswith("+") else call.from_number,
            "setting": call.setting_name,
            "at": jst(call.at),
            "ended": call.ended,
            "waiting_for_keys": call.waiting_for_keys,
            "lines": [_line_json(line) for line in call.lines],
        },
        "messages": [
            {
                "id": m.id,
                "at": jst(m.at),
                "from": phone_numbers.display(m.from_number) if m.from_number.startswith("+") else m.from_number,
                "body": m.body,
            }
            for m in found.messages
        ],
    }
