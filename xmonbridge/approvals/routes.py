"""承認待ち views: the list with diffs, 承認 and 却下."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from .. import approval
from ..access import admin_required, approver_required
from ..extensions import db
from ..forms import EmptyForm
from ..models import ACTIONS, STATUS_PENDING, STATUSES, PendingChange
from . import bp


@bp.route("/")
@admin_required
def index() -> str:
    """List pending changes with a field-by-field diff, then the latest decisions."""
    pending = db.session.scalars(
        select(PendingChange).where(PendingChange.status == STATUS_PENDING).order_by(PendingChange.id)
    ).all()
    decided = db.session.scalars(
        select(PendingChange)
        .where(PendingChange.status != STATUS_PENDING)
        .order_by(PendingChange.decided_at.desc(), PendingChange.id.desc())
        .limit(current_app.config["PAGE_SIZE"])
    ).all()
    return render_template(
        "approvals/index.html",
        pending=[(c, approval.REGISTRY[c.kind], approval.diff(c)) for c in pending],
        # Where each change's object is seen and edited (kinds that say so).
        pages={c.id: approval.page_url(c) for c in pending},
        decided=[(c, approval.REGISTRY[c.kind]) for c in decided],
        actions=ACTIONS,
        statuses=STATUSES,
        form=EmptyForm(),
    )


def _decide(change_id: int, approve: bool) -> Response:
    change = db.get_or_404(PendingChange, change_id)
    kind = approval.REGISTRY[change.kind]
    if not EmptyForm().validate_on_submit():
        flash("処理できませんでした。画面を開き直してやり直してください。", "danger")
        return redirect(url_for("approvals.index"))
    try:
        if approve:
            approval.approve(change, current_user)
        else:
            approval.reject(change, current_user)
    except approval.ApprovalError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return redirect(url_for("approvals.index"))
    db.session.commit()
    verb = "承認" if approve else "却下"
    flash(f"{kind.label}「{change.target_name}」の{ACTIONS[change.action]}を{verb}しました。", "success")
    return redirect(url_for("approvals.index"))


@bp.route("/<int:change_id>/approve", methods=["POST"])
@approver_required
def approve(change_id: int) -> Response:
    """Apply a pending change (承認権限 only)."""
    return _decide(change_id, approve=True)


@bp.route("/<int:change_id>/reject", methods=["POST"])
@approver_required
def reject(change_id: int) -> Response:
    """Discard a pending change (承認権限 only)."""
    return _decide(change_id, approve=False)
