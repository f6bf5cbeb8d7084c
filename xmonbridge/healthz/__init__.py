"""`GET /healthz`: the self-check (health.py) as JSON, for `xmonbridge check` and load balancers.

No login and nothing secret in it; 503 when critical (nobody would be called), else 200.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("healthz", __name__)

from . import routes  # noqa: E402,F401
