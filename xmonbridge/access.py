"""Who may open what: login, 管理者 and 承認権限 checks for views."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort
from flask_login import current_user, login_required

from .auth import sessions
from .extensions import login_manager
from .models import User

F = TypeVar("F", bound=Callable[..., Any])


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    # Only while the session's row exists (auth/sessions.py): logout and password changes end it.
    return sessions.load_user(user_id)


def admin_required(view: F) -> F:
    """Require a logged-in administrator."""

    @wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def approver_required(view: F) -> F:
    """Require a logged-in administrator with 承認権限."""

    @wraps(view)
    @admin_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_approver:
            abort(403)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]
