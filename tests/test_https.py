"""Serving hardened: loopback by default, no cross-origin grants, XSRF and size limits, and the
nginx TLS proxy of deploy/nginx/healthmon.conf in front (security headers, HTTP -> HTTPS, the
websocket, a Secure session cookie).

Three kinds of test. Unmarked: the shipped configuration files say what they must (no server).
``slow``: one ``python -m healthmon serve`` with default settings, probed over plain HTTP.
``browser``: the same server behind Debian's nginx running deploy/nginx/healthmon.conf
unprivileged on high ports of 127.0.0.1 with a throwaway self-signed certificate (.ci/run
installs nginx beside Chromium; without nginx or openssl they skip with the reason).
``-k https`` selects all of them.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import ROOT

NGINX_CONF = ROOT / "deploy" / "nginx" / "healthmon.conf"
SYSTEMD = ROOT / "deploy" / "systemd"
STREAMLIT_CONF = ROOT / ".streamlit" / "config.toml"
EVIL = "http://evil.example"
SECURITY_HEADERS = {
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "content-security-policy": "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
PASSPHRASE = "correct horse battery staple 42"
MIB = 1024 * 1024


# ----- helpers (tests/test_packaging.py uses them too) -----

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path) -> dict[str, str]:
    """This environment without any HEALTHMON_* setting of the caller's, plus a fresh data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHMON_")}
    env.update(HEALTHMON_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_server(command: list[str], *, data_dir: Path, cwd: Path, log: Path, timeout: float = 240,
                 port: int | None = None, settings: dict[str, str] | None = None) -> Server:
    """``<command> serve --port P`` (default host), waited for until ``/healthz`` answers.

    ``port``: where it listens (default: a free port); ``settings``: HEALTHMON_* variables to add.
    """
    port = port or free_port()
    env = {**server_env(data_dir), **(settings or {})}
    with log.open("wb") as out:
        process = subprocess.Popen([*command, "serve", "--port", str(port)], cwd=cwd, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    server = Server(process, port, log, env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server stopped (exit {process.returncode}) before answering: {server.tail()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    pytest.fail(f"the server did not answer /healthz within {timeout:.0f} s: {server.tail()}")


def dashboard_run(url: str, *, origin: str | None = None, ssl_context: ssl.SSLContext | None = None,
                  timeout: float = 180):
    """Open the dashboard's websocket as a browser tab would and run the app script once.

    Returns Streamlit's ``new_session`` message and every message up to ``script_finished``.
    """
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.sync.client import connect

    messages, new_session = [], None
    with connect(url, origin=origin, ssl=ssl_context, subprotocols=["streamlit"], max_size=None,
                 open_timeout=30) as ws:
        rerun = BackMsg()
        rerun.rerun_script.query_string = ""
        rerun.rerun_script.page_script_hash = ""
        ws.send(rerun.SerializeToString())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = ForwardMsg()
            message.ParseFromString(ws.recv(timeout=max(1.0, deadline - time.monotonic())))
            messages.append(message)
            kind = message.WhichOneof("type")
            if kind == "new_session":
                new_session = message.new_session
            elif kind == "script_finished":
                return new_session, messages
    pytest.fail(f"the dashboard script did not finish within {timeout:.0f} s")


def dashboard_session_id(url: str):
    """An open dashboard websocket and its Streamlit session id (uploads are accepted only for a live
    session), read from the first message; close the websocket when done."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.sync.client import connect

    ws = connect(url, subprotocols=["streamlit"], max_size=None, open_timeout=30)
    rerun = BackMsg()
    rerun.rerun_script.query_string = ""
    ws.send(rerun.SerializeToString())
    while True:
        message = ForwardMsg()
        message.ParseFromString(ws.recv(timeout=60))
        if message.WhichOneof("type") == "new_session":
            return ws, message.new_session.initialize.session_id


def element_texts(messages) -> list[str]:
    return [str(m.delta.new_element) for m in messages if m.WhichOneof("type") == "delta"]


def non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine other than 127.0.0.0/8, or None."""
    candidates: set[str] = set()
    try:
        candidates |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    except OSError:
        pass
    for command in (["ip", "-4", "-o", "addr"], ["hostname", "-I"]):
        try:
            out = subprocess.run(command, check=False, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        candidates |= set(re.findall(r"\b(\d{1,3}(?:\.\d{1,3}){3})\b", out))
    for address in sorted(candidates):
        try:
            if ipaddress.ip_address(address).is_loopback or address.startswith("255.") or address.endswith(".255"):
                continue
        except ValueError:
            continue
        with socket.socket() as sock:  # really this machine's: binding to it works
            try:
                sock.bind((address, 0))
            except OSError:
                continue
        return address
    return None


def set_cookie_attributes(response: httpx.Response, name: str) -> dict[str, str]:
    headers = [h for h in response.headers.get_list("set-cookie") if h.split("=", 1)[0].strip() == name]
    assert headers, f"no {name} cookie set; Set-Cookie: {response.headers.get_list('set-cookie')}"
    attributes = {}
    for part in headers[-1].split(";")[1:]:
        key, _, value = part.strip().partition("=")
        attributes[key.lower()] = value
    return attributes


# ----- the shipped configuration (no server) -----

def test_serve_binds_to_loopback_unless_told_otherwise():
    from healthmon.cli import build_parser

    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"


def test_streamlit_config_keeps_xsrf_and_cors_protection_on():
    server = tomllib.loads(STREAMLIT_CONF.read_text())["server"]
    assert server["enableXsrfProtection"] is True
    assert server["enableCORS"] is True
    assert not server.get("corsAllowedOrigins")
    assert server["maxUploadSize"] == 20


def test_proxy_config_sets_headers_forwarding_websocket_and_the_body_limit():
    from healthmon.config import Settings

    text = NGINX_CONF.read_text()
    for name, value in SECURITY_HEADERS.items():
        assert re.search(rf'add_header\s+{name}\s+"{re.escape(value)}"\s+always;', text, re.IGNORECASE), name
    assert "return 301 https://$host$request_uri;" in text
    for directive in ("proxy_set_header X-Forwarded-Proto $scheme;", "proxy_set_header X-Forwarded-For",
                      "proxy_set_header Upgrade $http_upgrade;", "proxy_set_header Connection $connection_upgrade;",
                      "location /_stcore/stream", "server 127.0.0.1:8501;", "server_tokens off;",
                      "proxy_cookie_flags ~ secure;"):
        assert directive in text, directive
    limit_mib = int(re.search(r"client_max_body_size\s+(\d+)m;", text).group(1))
    upload_mib = tomllib.loads(STREAMLIT_CONF.read_text())["server"]["maxUploadSize"]
    assert limit_mib == upload_mib + 1  # Streamlit's limit plus the 1 MiB multipart overhead it allows
    assert limit_mib >= Settings.model_fields["api_max_body_mb"].default


def test_systemd_units_run_the_console_script_hardened():
    for unit, command in (("healthmon.service", "healthmon serve"), ("healthmon-worker.service", "healthmon worker")):
        text = (SYSTEMD / unit).read_text()
        lines = {line.strip() for line in text.splitlines()}
        assert any(line.startswith("ExecStart=") and command in line for line in lines), unit
        for required in ("User=healthmon", "EnvironmentFile=/etc/healthmon/env", "NoNewPrivileges=yes",
                         "ProtectSystem=strict", "ReadWritePaths=/var/lib/healthmon", "PrivateTmp=yes",
                         "ProtectHome=yes", "CapabilityBoundingSet="):
            assert required in lines, f"{unit}: {required}"


# ----- one server with default settings, over plain HTTP (slow) -----

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("https-serve")
    running = start_server([sys.executable, "-m", "healthmon"], data_dir=folder / "data", cwd=ROOT,
                           log=folder / "serve.log")
    yield running
    running.stop()


@pytest.mark.browser  # with the nginx tests: `-m browser -k https` selects what the deployment relies on
def test_https_the_apps_own_port_is_not_reachable_from_another_address_of_this_machine(server):
    address = non_loopback_ipv4()
    if address is None:
        pytest.skip("this machine has no IPv4 address besides loopback to try the server from")
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    with socket.socket() as sock:
        sock.settimeout(5)
        with pytest.raises(ConnectionRefusedError):
            sock.connect((address, server.port))


@pytest.mark.slow
def test_serve_grants_no_cross_origin_access(server):
    with httpx.Client(base_url=server.url, timeout=30, headers={"Origin": EVIL}) as client:
        for method, path in (("GET", "/healthz"), ("GET", "/_stcore/health"), ("GET", "/_stcore/host-config"),
                             ("GET", "/api/v1/openapi.json"), ("OPTIONS", "/api/v1/models/active:predict"),
                             ("OPTIONS", "/_stcore/upload_file/x/y"), ("GET", "/signin")):
            headers = {"Access-Control-Request-Method": "POST"} if method == "OPTIONS" else {}
            response = client.request(method, path, headers=headers)
            assert response.headers.get("access-control-allow-origin") not in (EVIL, "*"), (method, path)


@pytest.mark.slow
def test_serve_refuses_the_dashboard_websocket_from_another_origin(server):
    from websockets.exceptions import InvalidStatus

    stream = f"ws://127.0.0.1:{server.port}/_stcore/stream"
    with pytest.raises(InvalidStatus) as refused:
        dashboard_run(stream, origin=EVIL, timeout=30)
    assert refused.value.response.status_code == 403
    new_session, _ = dashboard_run(stream, origin=server.url)  # the same origin is served
    assert new_session.initialize.session_id


@pytest.mark.slow
def test_serve_uploads_need_the_xsrf_token_and_stay_under_the_size_limit(server):
    limit = tomllib.loads(STREAMLIT_CONF.read_text())["server"]["maxUploadSize"] * MIB
    ws, session_id = dashboard_session_id(f"ws://127.0.0.1:{server.port}/_stcore/stream")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            xsrf = client.get("/_stcore/health").cookies.get("_streamlit_xsrf")
            assert xsrf, "Streamlit set no XSRF cookie: is server.enableXsrfProtection off?"
            url = f"/_stcore/upload_file/{session_id}/file-1"
            small = {"file": ("notes.csv", b"note\nBP 150/95\n", "text/csv")}
            assert client.put(url, files=small).status_code == 403  # no X-Xsrftoken header
            assert client.put(url, files=small, headers={"X-Xsrftoken": "2|00|00|0"}).status_code == 403
            too_big = {"file": ("notes.csv", b"x" * (limit + 1), "text/csv")}
            assert client.put(url, files=too_big, headers={"X-Xsrftoken": xsrf}).status_code == 413
            assert client.put(url, files=small, headers={"X-Xsrftoken": xsrf}).status_code == 204
    finally:
        ws.close()


@pytest.mark.slow
def test_serve_api_refuses_a_body_over_its_limit(server):
    from healthmon.config import Settings

    limit = int(Settings.model_fields["api_max_body_mb"].default * MIB)
    response = httpx.post(f"{server.url}/api/v1/models/active:predict", content=b" " * (limit + 1),
                          headers={"content-type": "application/json"}, timeout=60)
    assert response.status_code == 413, response.text[:300]


# ----- behind nginx with TLS (browser) -----

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


@dataclass
class Proxy:
    https_port: int
    http_port: int
    folder: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"


def proxy_config(folder: Path, *, http_port: int, https_port: int, app_port: int, cert: Path, key: Path) -> str:
    """deploy/nginx/healthmon.conf for an unprivileged nginx: high ports on 127.0.0.1, the test's
    certificate, every file it writes in ``folder``. Each substitution must find its text, so an edit
    of the shipped file that the test no longer matches fails here instead of testing something else."""
    site = NGINX_CONF.read_text()
    for old, new in (
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen [::]:80;", ""),
        ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        ("listen [::]:443 ssl;", ""),
        ("/etc/letsencrypt/live/healthmon.example.org/fullchain.pem", str(cert)),
        ("/etc/letsencrypt/live/healthmon.example.org/privkey.pem", str(key)),
        ("server 127.0.0.1:8501;", f"server 127.0.0.1:{app_port};"),
        ("return 301 https://$host$request_uri;", f"return 301 https://$host:{https_port}$request_uri;"),
    ):
        assert old in site, f"deploy/nginx/healthmon.conf no longer has {old!r}: update tests/test_https.py"
        site = site.replace(old, new)
    temp_paths = "\n".join(f"    {kind}_temp_path {folder / kind};"
                           for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{'user root;' if os.geteuid() == 0 else ''}
worker_processes 1;
pid {folder / 'nginx.pid'};
error_log {folder / 'error.log'} info;
events {{ worker_connections 256; }}
http {{
    access_log {folder / 'access.log'};
{temp_paths}
{site}
}}
"""


@pytest.fixture(scope="module")
def proxy(server: Server, tmp_path_factory: pytest.TempPathFactory):
    if NGINX is None:
        pytest.skip("no nginx: apt-get install -y nginx (.ci/run does)")
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make the test certificate: apt-get install -y openssl")
    folder = tmp_path_factory.mktemp("nginx")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-days", "1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    http_port, https_port = free_port(), free_port()
    conf = folder / "nginx.conf"
    conf.write_text(proxy_config(folder, http_port=http_port, https_port=https_port, app_port=server.port,
                                 cert=cert, key=key))
    command = [NGINX, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")]
    checked = subprocess.run([*command, "-t"], check=False, capture_output=True, text=True)
    assert checked.returncode == 0, f"nginx -t refused the config:\n{checked.stderr}\n{conf.read_text()}"
    with (folder / "nginx.out").open("wb") as out:
        process = subprocess.Popen([*command, "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"nginx stopped: {(folder / 'error.log').read_text(errors='replace')[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("nginx did not listen within 30 s")
                time.sleep(0.2)
        yield Proxy(https_port, http_port, folder)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def unverified_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's self-signed certificate
    return context


@pytest.mark.browser
def test_https_responses_carry_the_security_headers(proxy):
    with httpx.Client(base_url=proxy.url, verify=False, timeout=30) as client:
        for path, status in (("/healthz", 200), ("/index.html", 200), ("/readyz", 401), ("/no/such/page", None)):
            response = client.get(path)
            if status is not None:
                assert response.status_code == status, (path, response.text[:300])
            for name, value in SECURITY_HEADERS.items():
                assert response.headers.get_list(name) == [value], (path, name, response.headers.get_list(name))
            assert "nginx/" not in response.headers.get("server", ""), "server_tokens off hides the version"


@pytest.mark.browser
def test_https_plain_http_is_redirected_to_https(proxy):
    response = httpx.get(f"http://127.0.0.1:{proxy.http_port}/Notes?case=7", follow_redirects=False, timeout=30)
    assert response.status_code == 301
    assert response.headers["location"] == f"https://127.0.0.1:{proxy.https_port}/Notes?case=7"
    assert "strict-transport-security" not in response.headers  # only ever sent over HTTPS


@pytest.mark.browser
def test_https_dashboard_websocket_passes_through_the_proxy(proxy):
    new_session, messages = dashboard_run(f"wss://127.0.0.1:{proxy.https_port}/_stcore/stream",
                                          origin=proxy.url, ssl_context=unverified_tls())
    assert new_session.initialize.session_id
    assert any("healthmon" in text for text in element_texts(messages))


@pytest.mark.browser
def test_https_proxy_refuses_a_body_over_its_limit(proxy):
    limit = int(re.search(r"client_max_body_size\s+(\d+)m;", NGINX_CONF.read_text()).group(1)) * MIB
    request = (f"PUT /_stcore/upload_file/s/f HTTP/1.1\r\nHost: 127.0.0.1:{proxy.https_port}\r\n"
               f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {limit + 1}\r\n\r\n").encode()
    with (socket.create_connection(("127.0.0.1", proxy.https_port), timeout=30) as raw,
          unverified_tls().wrap_socket(raw, server_hostname="localhost") as tls):
        tls.sendall(request)  # the headers only: nginx answers before any body is sent
        status_line = tls.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"413", status_line


@pytest.mark.browser
def test_https_sign_in_sets_a_secure_session_cookie(proxy, server):
    added = subprocess.run([sys.executable, "-m", "healthmon", "users", "add", "nurse-https", "--role", "clinician",
                            "--password-stdin"], check=False, input=PASSPHRASE + "\n", capture_output=True, text=True,
                           cwd=ROOT, env=server.env, timeout=300)
    assert added.returncode == 0, added.stderr
    with httpx.Client(base_url=proxy.url, verify=False, timeout=60) as client:
        form = client.get("/signin", params={"next": "/"})
        assert form.status_code == 200 and "<form" in form.text, form.text[:300]
        csrf = client.cookies.get("healthmon_csrf")
        assert csrf, f"GET /signin set no healthmon_csrf cookie: {form.headers.get_list('set-cookie')}"
        response = client.post("/signin", data={"name": "nurse-https", "password": PASSPHRASE, "next": "/",
                                                "csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303, response.text[:500]
    assert urlsplit(response.headers["location"]).path == "/"
    attributes = set_cookie_attributes(response, "healthmon_session")
    assert "secure" in attributes, "the session cookie must be Secure when served over HTTPS"
    assert "httponly" in attributes
    assert attributes.get("samesite", "").lower() == "lax"
