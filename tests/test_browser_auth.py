"""Signing in to the real server in a real Chromium: sessions that survive a reload, the cookie
the browser keeps, a shared page link, sign-out (and, with a local OpenID Connect provider,
single sign-on: see the ``oidc`` tests).

The server is ``python -m healthmon serve`` on 127.0.0.1 with a temporary SQLite database and
no model (signing in does not need one). Marked ``browser``; select these with
``pytest -m browser -k "oidc or reload or https"``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from test_https import free_port, start_server

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("HEALTHMON_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
PASSWORD = "violet kettle rides the ferry 42"
SERVE = [sys.executable, "-m", "healthmon"]
#: Nothing runs queued jobs: a job these tests queue stays queued.
EXTERNAL_WORKER = {"HEALTHMON_WORKER": "external"}
WAIT = 120_000


def add_accounts(data_dir: Path, **roles: str) -> None:
    from healthmon.config import Settings
    from healthmon.services import accounts
    from healthmon.services.database import connect

    factory = connect(Settings(data_dir=data_dir))
    for name, role in roles.items():
        accounts.add_user(factory, None, name, role, PASSWORD)
    factory.kw["bind"].dispose()


@pytest.fixture(scope="module")
def chromium():
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def local_server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("browser-auth") / "data"
    add_accounts(data_dir, cli="clinician", ann="annotator", ada="admin")
    server = start_server(SERVE, data_dir=data_dir, cwd=ROOT, log=data_dir.parent / "serve.log",
                          settings=EXTERNAL_WORKER)
    yield {"url": server.url, "data_dir": data_dir}
    server.stop()


def fill_sign_in(page, name: str, password: str = PASSWORD) -> None:
    page.get_by_label("User name").fill(name, timeout=WAIT)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def signed_in_as(page, name: str) -> None:
    page.get_by_text("Signed in as").wait_for(timeout=WAIT)
    assert name in page.locator('[data-testid="stSidebar"]').inner_text()


def nav_titles(page) -> list[str]:
    return [a.inner_text().split("\n")[-1] for a in page.locator('[data-testid="stSidebarNav"] a').all()]


def session_cookie(context) -> dict:
    return next(c for c in context.cookies() if c["name"] == "healthmon_session")


def test_reload_keeps_a_local_account_signed_in_on_its_page(chromium, local_server):
    context = chromium.new_context()
    page = context.new_page()
    page.goto(local_server["url"] + "/Vitals", timeout=WAIT)
    assert "/signin" in page.url  # signed out: the gate sends the page link to sign in first
    fill_sign_in(page, "cli")
    page.get_by_role("heading", name="Vitals", exact=True).wait_for(timeout=WAIT)
    assert page.url.endswith("/Vitals")  # and back to the page the link named
    signed_in_as(page, "cli")
    page.reload()
    page.get_by_role("heading", name="Vitals", exact=True).wait_for(timeout=WAIT)
    signed_in_as(page, "cli")
    assert page.url.endswith("/Vitals") and page.get_by_text("Page not found").count() == 0
    context.close()


def test_reload_the_cookie_is_httponly_lax_and_holds_no_name_or_role(chromium, local_server):
    context = chromium.new_context()
    page = context.new_page()
    page.goto(local_server["url"], timeout=WAIT)
    fill_sign_in(page, "ann")
    signed_in_as(page, "ann")
    cookie = session_cookie(context)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]  # plain HTTP on loopback
    assert "ann" not in cookie["value"] and "annotator" not in cookie["value"]
    assert page.evaluate("document.cookie").find("healthmon_session") == -1  # page scripts cannot read it
    assert "Admin" not in nav_titles(page)  # an annotator's navigation has no Admin page
    page.goto(local_server["url"] + "/Admin", timeout=WAIT)  # typed by hand: not in an annotator's navigation
    signed_in_as(page, "ann")
    page.get_by_text("Page not found").wait_for(timeout=WAIT)
    assert page.get_by_role("heading", name="Admin", exact=True).count() == 0
    context.close()


def test_reload_after_sign_out_shows_sign_in_and_the_old_cookie_no_longer_works(chromium, local_server):
    context = chromium.new_context()
    page = context.new_page()
    page.goto(local_server["url"] + "/Review", timeout=WAIT)
    fill_sign_in(page, "cli")
    signed_in_as(page, "cli")
    old = session_cookie(context)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/signin**", timeout=WAIT)
    page.get_by_role("button", name="Sign in").wait_for(timeout=WAIT)
    context.close()
    replay = chromium.new_context()
    replay.add_cookies([old])  # someone who copied the cookie before the sign-out
    stolen = replay.new_page()
    stolen.goto(local_server["url"] + "/Review", timeout=WAIT)
    stolen.get_by_role("button", name="Sign in").wait_for(timeout=WAIT)
    assert "/signin" in stolen.url and stolen.get_by_text("Signed in as").count() == 0
    replay.close()


def test_reload_a_wrong_password_is_refused_on_the_sign_in_page(chromium, local_server):
    context = chromium.new_context()
    page = context.new_page()
    page.goto(local_server["url"], timeout=WAIT)
    fill_sign_in(page, "cli", "not her password at all")
    page.get_by_text("Sign-in refused").wait_for(timeout=WAIT)
    assert all(c["name"] != "healthmon_session" for c in context.cookies())
    context.close()


# ----------------------------------------------------------------------------- single sign-on (OpenID Connect)
ROLE_MAP = '{"hm-admins": "admin", "hm-clinicians": "clinician", "hm-annotators": "annotator"}'


@pytest.fixture(scope="module")
def oidc_server(tmp_path_factory):
    """A local OpenID Connect provider (oidc-provider-mock) and the server signed in through it.

    One hostname (127.0.0.1) everywhere: the mock names its issuer after the Host header, and
    Streamlit ties its identity cookie to the origin of the redirect address.
    """
    pytest.importorskip("oidc_provider_mock", reason="oidc-provider-mock is in requirements-dev.txt")
    import httpx

    work = tmp_path_factory.mktemp("browser-oidc")
    provider_port, port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{provider_port}"
    provider_log = open(work / "provider.log", "w+")
    provider = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port",
                                 str(provider_port)], stdout=provider_log, stderr=subprocess.STDOUT)
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.25)
        else:
            provider_log.seek(0)
            pytest.fail(f"the OpenID Connect provider did not start: {provider_log.read()[-2000:]}")
        # The provider's people: their ID tokens carry these groups (the claim healthmon maps).
        for sub, claims in {"nina": {"groups": ["staff", "hm-annotators"], "preferred_username": "nina"},
                            "carl": {"groups": ["hm-clinicians"], "preferred_username": "carl"},
                            "visitor": {"groups": ["staff"], "preferred_username": "visitor"}}.items():
            assert httpx.put(f"{issuer}/users/{sub}", json=claims, timeout=10).status_code == 204
        data_dir = work / "data"
        add_accounts(data_dir, ada="admin")
        env = {"HEALTHMON_OIDC_METADATA_URL": f"{issuer}/.well-known/openid-configuration",
               "HEALTHMON_OIDC_CLIENT_ID": "healthmon", "HEALTHMON_OIDC_CLIENT_SECRET": "healthmon-test-secret",
               "HEALTHMON_OIDC_ROLE_MAP": ROLE_MAP, "HEALTHMON_PUBLIC_URL": f"http://127.0.0.1:{port}"}
        server = start_server(SERVE, data_dir=data_dir, cwd=ROOT, log=work / "serve.log", port=port,
                              settings={**EXTERNAL_WORKER, **env})
        yield {"url": server.url, "issuer": issuer, "data_dir": data_dir}
        server.stop()
    finally:
        provider.terminate()
        provider.wait(timeout=15)
        provider_log.close()


def sso_sign_in(page, server, sub: str, start: str = "/") -> None:
    """Open ``start`` signed out, choose the hospital sign-in, and authorize as ``sub`` at the provider."""
    page.goto(server["url"] + start, timeout=WAIT)
    page.get_by_role("link", name="Hospital sign-in").click()
    page.wait_for_url(server["issuer"] + "/**", timeout=WAIT)
    page.fill("input[name=sub]", sub)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(server["url"] + "/**", timeout=WAIT)


def test_oidc_sign_in_maps_the_group_to_annotator_survives_a_reload_and_shows_no_admin_page(chromium, oidc_server):
    context = chromium.new_context()
    page = context.new_page()
    sso_sign_in(page, oidc_server, "nina", start="/Review")
    page.get_by_role("heading", name="Review", exact=True).wait_for(timeout=WAIT)  # the page the link named
    signed_in_as(page, "nina")
    assert "annotator" in page.locator('[data-testid="stSidebar"]').inner_text()
    assert "Admin" not in nav_titles(page) and "Notes" not in nav_titles(page)
    page.reload()
    page.get_by_role("heading", name="Review", exact=True).wait_for(timeout=WAIT)
    signed_in_as(page, "nina")
    context.close()


def test_oidc_a_person_whose_groups_map_to_no_role_is_refused(chromium, oidc_server):
    context = chromium.new_context()
    page = context.new_page()
    sso_sign_in(page, oidc_server, "visitor")
    page.get_by_text("none of your groups is mapped").wait_for(timeout=WAIT)
    assert page.get_by_text("Signed in as").count() == 0 and page.get_by_text("Cases awaiting").count() == 0
    from healthmon.config import Settings
    from healthmon.services import accounts
    from healthmon.services.database import connect

    factory = connect(Settings(data_dir=oidc_server["data_dir"]))
    assert "visitor" not in {a["name"] for a in accounts.accounts(factory, None)}  # no account, no default role
    factory.kw["bind"].dispose()
    context.close()


def test_oidc_sign_out_returns_to_sign_in_and_the_old_cookie_no_longer_works(chromium, oidc_server):
    context = chromium.new_context()
    page = context.new_page()
    sso_sign_in(page, oidc_server, "carl")
    signed_in_as(page, "carl")
    old = [c for c in context.cookies() if c["name"].startswith("_streamlit_user")]
    assert old and all(c["httpOnly"] for c in old)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(oidc_server["issuer"] + "/**", timeout=WAIT)  # the provider ends its own session too
    page.locator("button[type=submit]").first.click()
    page.wait_for_url("**/signin**", timeout=WAIT)
    page.get_by_role("link", name="Hospital sign-in").wait_for(timeout=WAIT)
    context.close()
    replay = chromium.new_context()
    replay.add_cookies(old)  # Streamlit's identity cookie is signed but stateless: replayed, it still decodes
    stolen = replay.new_page()
    stolen.goto(oidc_server["url"] + "/", timeout=WAIT)
    stolen.get_by_text("signed out").wait_for(timeout=WAIT)  # ... and healthmon's session row says it ended
    assert stolen.get_by_text("Signed in as").count() == 0 and stolen.get_by_text("Cases awaiting").count() == 0
    replay.close()


def test_reload_a_polling_jobs_panel_stops_and_asks_to_sign_in_once_the_session_ends_elsewhere(
        chromium, local_server, tmp_path):
    # Before, the panel's fragment kept polling (and its Cancel acted) as the user captured when the
    # page first ran, after that user had signed out in another tab.
    from healthmon.config import Settings
    from healthmon.services import accounts, web_sessions
    from healthmon.services.database import connect
    from healthmon.services.jobs import get_job
    from healthmon.services.notes import submit_for_scoring
    from healthmon.types import Note

    settings = Settings(data_dir=local_server["data_dir"])
    factory = connect(settings)
    version = tmp_path / "never-run"  # the server's worker is external and not running: the job stays queued
    version.mkdir()
    (version / "card.json").write_text("{}")
    queued = submit_for_scoring(factory, accounts.sign_in(factory, "cli", PASSWORD, settings),
                                [Note(text="Fasting glucose 131 mg/dL, on metformin.", note_id="poll-1")], version)
    context = chromium.new_context()
    page = context.new_page()
    page.goto(local_server["url"], timeout=WAIT)
    fill_sign_in(page, "cli")
    page.get_by_role("button", name="Cancel").first.wait_for(timeout=WAIT)  # the live panel, polling each second
    token = web_sessions.read_cookie(session_cookie(context)["value"], web_sessions.session_secret(settings))
    accounts.sign_out(factory, token)  # signed out elsewhere: the same session row ends
    page.wait_for_url("**/signin**", timeout=30_000)  # the next poll re-checks and leaves the page
    assert get_job(factory, queued).status == "queued"
    factory.kw["bind"].dispose()
    context.close()
