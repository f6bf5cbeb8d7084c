"""Security headers on every response: pages, static files and error pages alike."""

from __future__ import annotations

from flask import Flask
from werkzeug.wrappers import Response

# Everything (Bootstrap included) is served by the app itself, and no template has inline
# scripts, inline styles or event handler attributes, so nothing else needs allowing.
# img-src allows data: for the SVG icons inside Bootstrap's CSS (check marks, select arrows).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _add_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def init_app(app: Flask) -> None:
    """Add the headers to every response."""
    app.after_request(_add_headers)
