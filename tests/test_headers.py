"""Security headers on every response, and templates that the Content-Security-Policy allows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.conftest import AuthActions

PACKAGE = Path(__file__).resolve().parent.parent / "xmonbridge"
EXPECTED = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
CSP_DIRECTIVES = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
]


@pytest.mark.parametrize(
    "path,status",
    [
        ("/login", 200),
        ("/admin/users/", 200),
        ("/static/css/app.css", 200),
        ("/static/js/app.js", 200),
        ("/bootstrap/static/css/bootstrap.min.css", 200),
        ("/no/such/page", 404),
        ("/logout", 405),
    ],
)
def test_every_response_carries_the_headers(
    client: FlaskClient, logged_in: AuthActions, path: str, status: int
) -> None:
    response = client.get(path)
    assert response.status_code == status
    for name, value in EXPECTED.items():
        assert response.headers[name] == value
    policy = [part.strip() for part in response.headers["Content-Security-Policy"].split(";")]
    for directive in CSP_DIRECTIVES:
        assert directive in policy
    assert not any("unsafe" in part for part in policy)
    response.close()


def _templates() -> list[Path]:
    return sorted((PACKAGE / "templates").rglob("*.html"))


@pytest.mark.parametrize("template", _templates(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_templates_have_nothing_inline_that_the_policy_blocks(template: Path) -> None:
    text = template.read_text()
    assert not re.search(r"\sstyle\s*=", text), "inline style attribute"
    assert not re.search(r"\son[a-z]+\s*=", text), "inline event handler"
    assert "javascript:" not in text
    for tag in re.findall(r"<script\b[^>]*>", text):
        # External scripts, or JSON data blocks (never executed, so not blocked).
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert "<style" not in text
