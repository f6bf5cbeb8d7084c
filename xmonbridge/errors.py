"""Error pages: Japanese, in the app's layout, and safe after a failed database transaction."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g, make_response, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed
from werkzeug.wrappers import Response

from .extensions import db
from .layout import LayoutUser

TITLES = {
    400: "リクエストが正しくありません",
    403: "権限がありません",
    404: "ページが見つかりません",
    405: "この操作はできません",
    413: "データが大きすぎます",
    500: "サーバエラー",
}
MESSAGES = {
    400: "リクエストの内容が正しくありません。画面を開き直してやり直してください。",
    403: "この操作を行う権限がありません。",
    404: "ページが見つかりません。URL が正しいか確認してください。",
    405: "この画面ではその操作はできません。画面を開き直してやり直してください。",
    413: "送信されたデータが大きすぎます。",
    500: "サーバでエラーが発生したため、処理できませんでした。しばらくしてから再度お試しください。",
}
# Paths whose errors are JSON (the alert API).
API_PREFIX = "/api/"
# Kept as tests/test_auth.py knows it: an expired token and a forged form look the same.
CSRF_EXPIRED = "フォームの有効期限が切れたか、不正な送信です。画面を開き直してやり直してください。"
OTHER = "リクエストを処理できませんでした。"


def _page(code: int, message: str, **context: Any) -> Response:
    title = TITLES.get(code, f"エラー {code}")
    return make_response(render_template("error.html", code=code, title=title, message=message, **context), code)


def _api_error(code: int, message: str) -> Response:
    """An error of the alert API: JSON for the monitor's scripts, not a page."""
    return make_response({"errors": [{"field": "", "message": message}]}, code)


def _is_api() -> bool:
    return request.path.startswith(API_PREFIX)


def _http_error(error: HTTPException) -> Response:
    """Any HTTP error (400, 403, 404, 405, 413, ...) as a page of the app (JSON under /api/)."""
    code = error.code or 500
    if _is_api():
        response = _api_error(code, MESSAGES.get(code, OTHER))
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response
    message = CSRF_EXPIRED if isinstance(error, CSRFError) else MESSAGES.get(code, OTHER)
    response = _page(code, message)
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def _reload_user() -> LayoutUser:
    """Who is logged in, read again in a new session: the one of the request may be failed.

    The user Flask-Login loaded belongs to the failed session, and its attributes may be
    expired (a failed flush expires them). Dropped, it is loaded again through the user
    loader; if the database cannot answer that either, the page shows no login.
    """
    g.pop("_login_user", None)  # where Flask-Login keeps the user of the request
    try:
        user = current_user._get_current_object()
        if user.is_authenticated:
            return LayoutUser(True, bool(user.is_admin), user.display_name)
    except SQLAlchemyError:
        current_app.logger.exception("could not load the user for the error page")
        db.session.remove()
    g._login_user = current_app.login_manager.anonymous_user()
    return LayoutUser(False, False, "")


def _server_error(_error: InternalServerError) -> Response:
    """An unexpected exception: roll back and drop the session first, then render the page.

    The layout shows no pending count here (g.layout_user), so only the user is read again.
    """
    try:
        db.session.rollback()
    except SQLAlchemyError:
        current_app.logger.exception("rollback after an error failed")
    db.session.remove()
    if _is_api():
        return _api_error(500, MESSAGES[500])
    g.layout_user = _reload_user()
    return _page(500, MESSAGES[500])


def init_app(app: Flask) -> None:
    """Register the error pages."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InternalServerError, _server_error)
