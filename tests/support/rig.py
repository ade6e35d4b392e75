"""The production shape on one machine, loopback only, no Docker: nginx terminating TLS (a CA
made here), several `line-auth-bff serve` replicas with production settings, Redis with a
replica under Sentinel, and the sandbox as Telenor.

    ./scripts/production-shape          # start it, print the addresses, stop on Ctrl-C

Hosts (a browser maps them to 127.0.0.1; the certificate names them):

- `https://bff.example.no`      the BFF (`BFF_PUBLIC_URL`), over the replicas
- `http://entry.example.no`     the plain-http network-authentication entry, its own host
                                (no https there, so a browser's HTTPS-Upgrades falls back)
- `http://bff.example.no`       plain http on the BFF's own host (the BFF redirects or refuses)
- `https://app.example.no`      the single-page app: one static page that reads Mobile User Info
- `http(s)://telenor.example.no` the sandbox as Telenor's authorize pages

nginx binds 127.0.0.1:443 and :80 (browsers upgrade only from the default ports), the rest
are free ports. `tests/test_production_shape.py` runs the drills against it.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from service.config import generate_key
from service.store.embedded import end_process, free_port
from tests.support.servers import LocalSentinel

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "example.no"
BFF_HOST = f"bff.{DOMAIN}"
ENTRY_HOST = f"entry.{DOMAIN}"
APP_HOST = f"app.{DOMAIN}"
TELENOR_HOST = f"telenor.{DOMAIN}"
HOSTS = (BFF_HOST, ENTRY_HOST, APP_HOST, TELENOR_HOST)
CLIENT_SECRET = "rig-client-secret-5d0c9a7e41"
ADMIN_TOKEN = "rig-admin-token-93b2f1c6d8"

# The single-page app: signs in through the BFF, then reads Mobile User Info with its cookie.
APP_PAGE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>Shop</title>
<a id="login" href="https://bff.example.no/auth/web/login?return_to=https://app.example.no/">
Sign in</a> <a id="network" href="http://entry.example.no/auth/web/login?return_to=https://app.example.no/">
Sign in on mobile data</a>
<pre id="out">-</pre>
<script>
const out = document.getElementById("out");
fetch("https://bff.example.no/api/web/user-info",
      {credentials: "include", headers: {"X-CSRF": "1"}})
  .then(async r => { out.textContent = r.status + " " + await r.text(); })
  .catch(e => { out.textContent = "failed: " + e; });
</script></html>
"""


def make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and one server certificate for the https hosts (and 127.0.0.1): ca.pem, cert,
    key. The entry's host has no certificate: it is http only."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "line-auth-bff rig CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in HOSTS if h != ENTRY_HOST]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BFF_HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _nginx_conf(rig: Rig) -> str:
    d = rig.dir
    servers = "\n".join(
        f"    server 127.0.0.1:{r.port} max_fails=3 fail_timeout=2s;" for r in rig.replicas
    )
    tls = f"ssl_certificate {rig.cert}; ssl_certificate_key {rig.key};"
    bff = (
        # What matters in front of the BFF: who the client is and that it came over https
        # (X-Forwarded-For/-Proto, believed from this proxy only: BFF_TRUSTED_PROXIES), a
        # header limit below the BFF's own, and retries of idempotent requests only.
        "proxy_pass http://bff; add_header X-Replica $upstream_addr always;"
    )
    forwarded = (
        'proxy_set_header Connection ""; proxy_set_header Host $host; '
        "proxy_set_header X-Forwarded-For $remote_addr; "
        "proxy_set_header X-Forwarded-Proto $scheme;"
    )
    return f"""
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  log_format rig '$scheme $host $request_method $uri $status $upstream_addr';
  access_log {d}/nginx-access.log rig;
  client_body_temp_path {d}/nginx-body; proxy_temp_path {d}/nginx-proxy;
  fastcgi_temp_path {d}/nginx-fcgi; uwsgi_temp_path {d}/nginx-uwsgi; scgi_temp_path {d}/nginx-scgi;
  large_client_header_buffers 4 16k;
  client_max_body_size 16k;
  proxy_http_version 1.1;
  {forwarded}
  proxy_connect_timeout 1s;
  proxy_read_timeout 30s;
  proxy_next_upstream error timeout http_502;
  proxy_next_upstream_tries 3;
  upstream bff {{
{servers}
    keepalive 64;
    keepalive_timeout 4s;  # below uvicorn's 5 s: nginx, not the replica, closes idle ones
  }}
  upstream telenor {{ server 127.0.0.1:{rig.sandbox_port}; keepalive 8; }}
  # A name with no https server of its own (the entry's) gets no TLS handshake at all.
  server {{ listen 127.0.0.1:443 ssl default_server; ssl_reject_handshake on; }}
  server {{ listen 127.0.0.1:443 ssl; server_name {BFF_HOST}; {tls} location / {{ {bff} }} }}
  server {{ listen 127.0.0.1:443 ssl; server_name {TELENOR_HOST}; {tls}
           location / {{ proxy_pass http://telenor; }} }}
  server {{ listen 127.0.0.1:443 ssl; server_name {APP_HOST}; {tls}
           location / {{ root {d}/app; index index.html; }} }}
  server {{ listen 127.0.0.1:80; server_name {ENTRY_HOST};
           location ~ ^/auth/[a-z0-9_-]+/(login|network)$ {{ {bff} }}
           location / {{ return 404; }} }}
  server {{ listen 127.0.0.1:80; server_name {BFF_HOST}; location / {{ {bff} }} }}
  # The mobile network: on plain http only, it tells Telenor the line (the phone's `line`
  # cookie stands in for its SIM).
  server {{ listen 127.0.0.1:80; server_name {TELENOR_HOST};
           location / {{ {forwarded} proxy_set_header X-Sandbox-MSISDN $cookie_line;
                        proxy_pass http://telenor; }} }}
}}
"""


@dataclass
class Replica:
    name: str
    port: int
    admin_port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def upstream(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Rig:
    """Start with `start()`, end with `close()` (also on failure: nothing is left running)."""

    replica_count: int = 2
    env_overrides: dict[str, str] = field(default_factory=dict)
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bff-rig-")))
    replicas: list[Replica] = field(default_factory=list)
    sandbox_port: int = 0
    redis: LocalSentinel | None = None
    _nginx: subprocess.Popen[bytes] | None = None
    _sandbox: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.ca, self.cert, self.key = make_ca(self.dir)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Rig:
        try:
            for port in (80, 443):
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nginx does
                    try:
                        s.bind(("127.0.0.1", port))
                    except OSError as exc:
                        raise RuntimeError(
                            f"127.0.0.1:{port} is taken: the rig's nginx needs 80 and 443 "
                            "(browsers upgrade http only from the default ports)"
                        ) from exc
            self.redis = LocalSentinel(replica=True, durable=True, down_after_ms=1000).start()
            self.sandbox_port = free_port()
            self._write_apps()
            self._sandbox = self._spawn(
                [sys.executable, "-m", "service", "sandbox", "--port", str(self.sandbox_port)],
                self.dir / "sandbox.log",
                self.env(),
            )
            _wait_http(f"http://127.0.0.1:{self.sandbox_port}/sandbox/faults")
            self.replicas = [
                Replica(f"r{i + 1}", free_port(), free_port()) for i in range(self.replica_count)
            ]
            for replica in self.replicas:
                self.start_replica(replica)
            (self.dir / "app").mkdir()
            (self.dir / "app" / "index.html").write_text(APP_PAGE)
            for part in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
                (self.dir / f"nginx-{part}").mkdir()
            # nginx's workers run as nobody: let them read app/ (nothing in it is secret).
            os.chmod(self.dir, 0o755)  # noqa: S103
            conf = self.dir / "nginx.conf"
            conf.write_text(_nginx_conf(self))
            nginx = shutil.which("nginx") or "/usr/sbin/nginx"
            self._nginx = self._spawn([nginx, "-c", str(conf), "-p", str(self.dir)], None)
            deadline = time.monotonic() + 10
            while not _listening(443):
                if self._nginx.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "nginx did not start: " + (self.dir / "nginx-error.log").read_text()[-500:]
                    )
                time.sleep(0.02)
            return self
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for proc in (self._nginx, *(r.proc for r in self.replicas), self._sandbox):
            end_process(proc, 10)
        if self.redis is not None:
            self.redis.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the parts ---------------------------------------------------------------------

    def _write_apps(self) -> None:
        web = {
            "client_id": "rig-web",
            "client_secret": CLIENT_SECRET,
            "display_name": "Shop",
            "return_urls": [f"https://{APP_HOST}/"],
            "allowed_origins": [f"https://{APP_HOST}"],
        }
        lines = ["[apps.web]", *(f"{k} = {json.dumps(v)}" for k, v in web.items())]
        (self.dir / "apps.toml").write_text("\n".join(lines) + "\n")

    def env(self, replica: Replica | None = None) -> dict[str, str]:
        """Production settings, as an operator would set them; nothing relaxed for a test."""
        assert self.redis is not None
        keys = getattr(self, "_keys", None) or generate_key()
        self._keys = keys
        telenor = f"http://127.0.0.1:{self.sandbox_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BFF_", "OTEL_"))} | {
            "BFF_ENV": "production",
            "BFF_PUBLIC_URL": f"https://{BFF_HOST}",
            "BFF_NETWORK_AUTH_URL": f"http://{ENTRY_HOST}",
            "BFF_SESSION_KEYS": keys,
            "BFF_APPS_FILE": str(self.dir / "apps.toml"),
            "BFF_REDIS_SENTINELS": self.redis.address,
            "BFF_REDIS_SENTINEL_SERVICE": self.redis.service,
            "BFF_REDIS_WAIT_REPLICAS": "1",
            # Above the 250 ms default: this Redis shares two busy CPUs with the whole rig.
            "BFF_REDIS_WAIT_TIMEOUT_MS": "500",
            "BFF_TRUSTED_PROXIES": "127.0.0.1",
            # Telenor's authorize page is reached by the browser (through nginx: http for
            # network authentication); the token, logout and API calls go straight to it.
            "BFF_TELENOR__AUTHORIZE_URL": f"http://{TELENOR_HOST}/oauth/v2/authorize",
            "BFF_TELENOR__BASE_URL": telenor,
            "BFF_ADMIN__TOKENS": f"ops:{ADMIN_TOKEN}",
        }
        if replica is not None:
            env["BFF_ADMIN__ADDRESS"] = f"127.0.0.1:{replica.admin_port}"
        return env | self.env_overrides

    def _spawn(
        self, args: list[str], log: Path | None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        if log is None:
            return subprocess.Popen(args, env=env, cwd=self.dir, stdout=subprocess.DEVNULL)
        with open(log, "ab") as out:  # the child has its own copy of the descriptor
            return subprocess.Popen(
                args, env=env, cwd=self.dir, stdout=out, stderr=subprocess.STDOUT
            )

    def start_replica(self, replica: Replica, **extra_env: str) -> None:
        replica.log = self.dir / f"{replica.name}.log"
        args = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1"]
        env = self.env(replica) | extra_env
        replica.proc = self._spawn([*args, "--port", str(replica.port)], replica.log, env)
        _wait_http(f"http://127.0.0.1:{replica.admin_port}/readyz", replica.proc)

    def stop_replica(self, replica: Replica, sig: signal.Signals = signal.SIGTERM) -> None:
        assert replica.proc is not None
        replica.proc.send_signal(sig)
        replica.proc.wait(30)
        replica.proc = None

    def served(self) -> list[tuple[str, str, str, str, str, str]]:
        """What nginx served, in order: (scheme, host, method, path, status, upstreams)."""
        log = self.dir / "nginx-access.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [tuple(line.split(" ", 5)) for line in lines]  # type: ignore[misc]

    def distribution(self) -> dict[str, int]:
        """Requests per replica, from nginx's access log (`$upstream_addr`)."""
        names = {r.upstream: r.name for r in self.replicas}
        counts: dict[str, int] = {}
        for *_, upstream in self.served():
            for addr in upstream.split(", "):
                if addr in names:
                    counts[names[addr]] = counts.get(names[addr], 0) + 1
        return counts

    def describe(self) -> str:
        assert self.redis is not None
        lines = [
            f"  https://{BFF_HOST}     the BFF, through nginx to "
            + ", ".join(f"{r.name} ({r.upstream})" for r in self.replicas),
            f"  http://{ENTRY_HOST}    the plain-http network-authentication entry",
            f"  https://{APP_HOST}     a single-page app that reads Mobile User Info",
            f"  http(s)://{TELENOR_HOST}  the sandbox as Telenor (127.0.0.1:{self.sandbox_port})",
            f"  Redis primary 127.0.0.1:{self.redis.primary.port}, replica "
            f"127.0.0.1:{self.redis.replica.port if self.redis.replica else '-'}, "
            f"Sentinel {self.redis.address}",
            f"  the CA to trust: {self.ca}",
            "  map the hosts to 127.0.0.1, e.g. chromium "
            f'--host-resolver-rules="MAP *.{DOMAIN} 127.0.0.1"',
        ]
        return "\n".join(lines)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer")
        time.sleep(0.05)


def main() -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # (a blocked mask would pass to the children)
        signal.signal(sig, lambda *_: stop.set())
    rig = Rig()
    try:
        rig.start()
    except RuntimeError as exc:
        print(f"production-shape: {exc}", file=sys.stderr)
        return 1
    print("The production shape is up:\n" + rig.describe() + "\nCtrl-C stops it.", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        rig.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
