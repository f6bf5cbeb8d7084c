"""A small browser over http.client for tests against real servers: cookies, forms, TLS by name.

`WebClient("https://xmon.example.test:8443/xmonbridge", connect_port=8443, cafile=…)` talks to
127.0.0.1 while sending the public host name as TLS SNI and in the Host header, and checks the
certificate against that name, as a browser that resolved the name to this box would. No
/etc/hosts entry, no proxy. It keeps cookies like a browser (Secure ones only over https) and
reads forms the way a browser submits them (`form_fields`).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.parse
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookies import SimpleCookie


@dataclass
class Page:
    """One answer: status, headers (every Set-Cookie kept), body as text."""

    status: int
    headers: list[tuple[str, str]]
    text: str

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)

    def set_cookies(self) -> list[str]:
        return [value for key, value in self.headers if key.lower() == "set-cookie"]


class _PublicHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with SNI, certificate check and Host for the public host name."""

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class WebClient:
    """Requests to one base URL (scheme, host, port, path prefix), reached on 127.0.0.1."""

    def __init__(self, base: str, *, cafile: str | None = None, timeout: float = 20) -> None:
        parts = urllib.parse.urlsplit(base)
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=cafile) if parts.scheme == "https" else None
        self.cookies: dict[str, str] = {}

    def url(self, path: str) -> str:
        """The full URL of a path below the prefix, as the public sees it."""
        default = 443 if self.scheme == "https" else 80
        netloc = self.host if self.port == default else f"{self.host}:{self.port}"
        return f"{self.scheme}://{netloc}{self.prefix}{path}"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Page:
        """Send one request to prefix + path (no redirect followed); keep the cookies it sets."""
        connection: http.client.HTTPConnection
        if self.context is not None:
            connection = _PublicHTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
        else:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        sent = dict(headers or {})
        if self.context is None:
            sent.setdefault("Host", f"{self.host}:{self.port}")
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            connection.request(method, self.prefix + path, body=body, headers=sent)
            response = connection.getresponse()
            page = Page(response.status, response.getheaders(), response.read().decode("utf-8", "replace"))
        finally:
            connection.close()
        for line in page.set_cookies():
            self._keep(line)
        return page

    def _keep(self, line: str) -> None:
        cookie = SimpleCookie()
        cookie.load(line)
        for name, morsel in cookie.items():
            if morsel["secure"] and self.scheme != "https":
                continue  # a browser drops it
            if morsel["max-age"] == "0" or morsel.value == "":
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value

    def get(self, path: str, headers: dict[str, str] | None = None) -> Page:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, fields: dict[str, str], headers: dict[str, str] | None = None) -> Page:
        """POST an urlencoded form."""
        sent = {"Content-Type": "application/x-www-form-urlencoded"}
        sent.update(headers or {})
        return self.request("POST", path, urllib.parse.urlencode(fields).encode(), sent)

    def submit(
        self, path: str, form_id: str | None = None, changes: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> Page:
        """GET the page at path and POST its form back with changes, as a browser submits it:
        the CSRF token included, the page as Referer (checked by the app over https)."""
        page = self.get(path)
        assert page.status == 200, (page.status, page.text[:500])
        fields = form_fields(page.text, form_id)
        fields.update(changes or {})
        return self.post(path, fields, {"Referer": self.url(path), **(headers or {})})

    def login(self, login: str, password: str, headers: dict[str, str] | None = None) -> Page:
        """Log in through the login form; return the answer to the POST."""
        return self.submit("/login", None, {"login": login, "password": password}, headers)


@dataclass
class _Form:
    id: str | None
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    """What a browser would submit from each form, with nothing changed."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self.current: _Form | None = None
        self.select: str | None = None
        self.select_first: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.current = _Form(a.get("id"), a.get("method", "get").lower())
            self.forms.append(self.current)
        if self.current is None:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button", "image", "reset", "file"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self.current.fields[name] = a.get("value", "on" if kind in ("checkbox", "radio") else "")
        elif tag == "select" and name:
            self.select, self.select_first = name, None
        elif tag == "option" and self.select:
            value = a.get("value", "")
            if self.select_first is None:
                self.select_first = value
                self.current.fields.setdefault(self.select, value)
            if "selected" in a:
                self.current.fields[self.select] = value
        elif tag == "textarea" and name:
            self.textarea = name
            self.current.fields[name] = ""

    def handle_data(self, data: str) -> None:
        if self.current is not None and self.textarea:
            self.current.fields[self.textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.current = None
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None


def form_fields(html: str, form_id: str | None = None) -> dict[str, str]:
    """The fields of the POST form with this id (or the only POST form) as a browser sends them."""
    parser = _FormParser()
    parser.feed(html)
    forms = [f for f in parser.forms if f.method == "post" and (form_id is None or f.id == form_id)]
    assert len(forms) == 1, f"{len(forms)} POST forms with id {form_id!r}"
    return dict(forms[0].fields)
