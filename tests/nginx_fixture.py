"""A real nginx (Debian's package) running deploy/nginx/xmonbridge.conf in front of a test server.

The site file is the one in deploy/, with only the values its header tells an admin to edit
replaced (`render_site`): the public host name, the certificate and key, the listen ports
(127.0.0.1 and free high ports instead of 80/443 on every address) and the upstream port.
nginx runs in the foreground from its own folder (main config, pid, logs, temp paths), never
the system's configuration or service. The certificate is self-signed for the public name.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NGINX = "/usr/sbin/nginx"
SITE = Path(__file__).parents[1] / "deploy" / "nginx" / "xmonbridge.conf"
SITE_HOST = "xmon.example.com"
SITE_PREFIX = "/xmonbridge"


@dataclass(frozen=True)
class Ports:
    https: int
    http: int
    upstream: int


def render_site(text: str, host: str, ports: Ports, cert: Path, key: Path, access_log: Path) -> str:
    """The site with the values its header lists replaced; each must be there to replace."""
    edits = {
        f"server_name {SITE_HOST};": f"server_name {host};",
        "/etc/ssl/xmonbridge/fullchain.pem": str(cert),
        "/etc/ssl/xmonbridge/privkey.pem": str(key),
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{ports.upstream};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{ports.https} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "listen 80;": f"listen 127.0.0.1:{ports.http};",
        "listen [::]:80;": "",
        "/var/log/nginx/xmonbridge.access.log": str(access_log),
    }
    for old, new in edits.items():
        assert old in text, f"{SITE} no longer has {old!r}: update render_site and the README"
        text = text.replace(old, new)
    directives = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert SITE_HOST not in directives and ":80;" not in directives and ":443 " not in directives
    return text


def self_signed(folder: Path, host: str) -> tuple[Path, Path]:
    """A certificate for host (its own issuer, one day) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "fullchain.pem", folder / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def main_config(folder: Path, site: Path) -> str:
    """What Debian's /etc/nginx/nginx.conf provides around a site, with every path in folder."""
    # Started as root, nginx runs its workers as `user`; pytest's folders are root's alone.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes 1;
pid {folder / 'nginx.pid'};
error_log {folder / 'error.log'} info;
events {{
    worker_connections 64;
}}
http {{
    access_log {folder / 'access.log'};
{temp}
    include {site};
}}
"""


class Nginx:
    """One nginx in the foreground, serving the rendered site from folder."""

    def __init__(self, folder: Path, host: str, upstream_port: int) -> None:
        from tests.real_server import free_port

        assert Path(NGINX).exists(), "nginx is not installed: apt-get install nginx (scripts/test.sh does)"
        self.folder = folder
        self.host = host
        folder.mkdir(parents=True, exist_ok=True)
        self.ports = Ports(https=free_port(), http=free_port(), upstream=upstream_port)
        self.cert, self.key = self_signed(folder, host)
        self.site = folder / "xmonbridge.conf"
        self.access_log_path = folder / "xmonbridge.access.log"
        rendered = render_site(SITE.read_text(), host, self.ports, self.cert, self.key, self.access_log_path)
        self.site.write_text(rendered)
        self.conf = folder / "nginx.conf"
        self.conf.write_text(main_config(folder, self.site))
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self, *args: str) -> list[str]:
        return [NGINX, "-p", str(self.folder), "-c", str(self.conf), *args]

    def start(self) -> None:
        check = subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        with open(self.folder / "stderr.log", "wb") as log:
            self.proc = subprocess.Popen(
                self.command("-g", "daemon off;"),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited {self.proc.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.ports.https), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nginx did not come up: {self.log()}")

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:] for p in (self.folder / "stderr.log", self.folder / "error.log") if p.exists()
        )

    def access_log(self) -> str:
        path = self.access_log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """SIGQUIT: graceful shutdown; SIGKILL if it takes too long."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the master and its worker
            self.proc.wait(timeout=10)
