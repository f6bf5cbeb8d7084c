"""Reverse proxy headers, trusted only from the configured number of hops (Werkzeug ProxyFix).

Behind nginx (deploy/nginx/xmonbridge.conf) the client's address, the scheme, the public host
and the path prefix arrive in X-Forwarded-For / -Proto / -Host / -Prefix. Anyone can send those
headers, so only the values the proxies themselves added count: PROXY_FIX_X_FOR of
X-Forwarded-For (each proxy appends one), and for the other three at most that many
(PROXY_FIX_X_PROTO / _HOST / _PREFIX, default 1: the nearest proxy replaces what it received).
With no proxy configured nothing is trusted. Twilio's signatures never depend on any of this:
they are checked over the URL built from the X-MON URL (public_url.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask


@dataclass(frozen=True)
class Hops:
    """How many values of each X-Forwarded-* header are trusted."""

    x_for: int
    x_proto: int
    x_host: int
    x_prefix: int


def hops(config: Any) -> Hops:
    """The trusted values per header: none without a proxy, never more than the proxies."""
    proxies = int(config["PROXY_FIX_X_FOR"])
    return Hops(
        x_for=proxies,
        x_proto=min(int(config["PROXY_FIX_X_PROTO"]), proxies),
        x_host=min(int(config["PROXY_FIX_X_HOST"]), proxies),
        x_prefix=min(int(config["PROXY_FIX_X_PREFIX"]), proxies),
    )


def init_app(app: Flask) -> None:
    """Wrap the WSGI app in ProxyFix when proxies are configured."""
    trusted = hops(app.config)
    if trusted.x_for == 0:
        return
    from werkzeug.middleware.proxy_fix import ProxyFix

    app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
        app.wsgi_app, x_for=trusted.x_for, x_proto=trusted.x_proto, x_host=trusted.x_host, x_prefix=trusted.x_prefix
    )
