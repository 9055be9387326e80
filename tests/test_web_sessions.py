"""Dashboard sessions that survive a reload: the sign-in route, its cookie, the page gate, single
sign-on sessions and opaque link ids (a real SQLite database; the routes through Starlette's client)."""

from __future__ import annotations

import os
import stat
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from healthmon.config import Settings
from healthmon.services import accounts, links, web_sessions
from healthmon.services.accounts import AuthError
from healthmon.services.database import connect
from healthmon.ui import web_auth

PASSWORD = "violet kettle rides the ferry 42"


@pytest.fixture()
def site(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    factory = connect(settings)
    accounts.add_user(factory, None, "cli", "clinician", PASSWORD)
    accounts.add_user(factory, None, "ada", "admin", PASSWORD + " admin")

    async def page(request):  # stands in for Streamlit's index page
        return PlainTextResponse(f"page {request.url.path}")

    app = Starlette(routes=web_auth.routes(settings, factory) + [Route(p, page) for p in web_auth.PAGE_PATHS],
                    middleware=[Middleware(web_auth.PageGate, settings=settings, factory=factory)])
    return settings, factory, app


def _sign_in(client: TestClient, name: str = "cli", password: str = PASSWORD, next_path: str = "/"):
    form = client.get("/signin", params={"next": next_path})
    assert form.status_code == 200
    csrf = client.cookies.get(web_sessions.CSRF_COOKIE_NAME)
    return client.post("/signin", data={"name": name, "password": password, "next": next_path, "csrf": csrf},
                       follow_redirects=False)


def test_signing_in_sets_a_signed_httponly_lax_cookie_holding_only_the_session_token(site):
    settings, factory, app = site
    client = TestClient(app, base_url="http://testserver")
    answer = _sign_in(client, next_path="/Case?case=abc")
    assert answer.status_code == 303 and answer.headers["location"] == "/Case?case=abc"
    header = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(web_sessions.COOKIE_NAME + "="))
    attributes = header.lower()
    assert "httponly" in attributes and "samesite=lax" in attributes and "path=/" in attributes
    assert "secure" not in attributes  # plain HTTP here; over HTTPS see the next test
    value = client.cookies.get(web_sessions.COOKIE_NAME)
    assert "cli" not in value and "clinician" not in value
    token = web_sessions.read_cookie(value, web_sessions.session_secret(settings))
    assert accounts.check_session(factory, token, settings).name == "cli"
    assert answer.headers["cache-control"] == "no-store"


def test_over_https_the_cookie_is_secure(site):
    _, _, app = site
    client = TestClient(app, base_url="https://testserver")
    answer = _sign_in(client)
    header = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(web_sessions.COOKIE_NAME + "="))
    assert "secure" in header.lower()


def test_a_wrong_password_or_a_missing_form_token_sets_no_session(site):
    _, _, app = site
    client = TestClient(app)
    refused = _sign_in(client, password="not her password at all")
    assert refused.status_code == 401 and "Sign-in refused" in refused.text
    assert web_sessions.COOKIE_NAME not in client.cookies
    # A form posted from another site carries no matching token: login CSRF is refused.
    forged = TestClient(app).post("/signin", data={"name": "cli", "password": PASSWORD, "next": "/", "csrf": "x"},
                                  follow_redirects=False)
    assert forged.status_code == 403 and web_sessions.COOKIE_NAME not in forged.cookies


def test_the_form_escapes_what_it_echoes_and_next_never_leaves_the_site(site):
    _, _, app = site
    client = TestClient(app)
    page = client.get("/signin", params={"next": '/Case?x="><script>alert(1)</script>'})
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;" in page.text
    for hostile in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        assert web_auth.safe_next(hostile) == "/"
    answer = _sign_in(client, next_path="//evil.example/")
    assert answer.headers["location"] == "/"


def test_the_gate_sends_a_signed_out_page_request_to_sign_in_and_back(site):
    _, _, app = site
    client = TestClient(app)
    answer = client.get("/Case?case=Zq3", follow_redirects=False)
    assert answer.status_code == 303
    location = urlsplit(answer.headers["location"])
    assert location.path == "/signin" and parse_qs(location.query)["next"] == ["/Case?case=Zq3"]
    assert client.get("/_stcore/health", follow_redirects=False).status_code == 404  # not a page: not gated
    next_path = parse_qs(location.query)["next"][0]
    landed = _sign_in(client, next_path=next_path)
    assert landed.headers["location"] == "/Case?case=Zq3"
    assert client.get("/Case?case=Zq3").text == "page /Case"  # a reload: still signed in
    assert client.get("/signin", follow_redirects=False).status_code == 303  # signed in: no form again


@pytest.mark.parametrize("ending", ["sign out", "password change", "deactivation", "idle", "absolute"])
def test_every_way_a_session_ends_makes_the_old_cookie_useless(site, ending):
    settings, factory, app = site
    client = TestClient(app)
    _sign_in(client)
    cookie = client.cookies.get(web_sessions.COOKIE_NAME)
    token = web_sessions.read_cookie(cookie, web_sessions.session_secret(settings))
    assert client.get("/Notes", follow_redirects=False).status_code == 200
    if ending == "sign out":
        accounts.sign_out(factory, token)
    elif ending == "password change":
        accounts.set_password(factory, None, "cli", PASSWORD + " renewed")
    elif ending == "deactivation":
        accounts.set_active(factory, None, "cli", False)
    else:
        from datetime import timedelta

        from sqlalchemy import update

        from healthmon.storage.db import transaction
        from healthmon.storage.models import AuthSession, utcnow

        column = AuthSession.last_seen_at if ending == "idle" else AuthSession.expires_at
        shift = timedelta(minutes=settings.session_idle_minutes + 1) if ending == "idle" else timedelta(seconds=1)
        with transaction(factory) as session:
            session.execute(update(AuthSession).values({column: utcnow() - shift}))
    replay = TestClient(app, cookies={web_sessions.COOKIE_NAME: cookie})
    assert replay.get("/Notes", follow_redirects=False).status_code == 303
    assert web_sessions.cookie_session(factory, settings, cookie) is None


def test_a_tampered_cookie_is_refused_and_the_secret_file_is_private(site):
    settings, factory, app = site
    client = TestClient(app)
    _sign_in(client)
    cookie = client.cookies.get(web_sessions.COOKIE_NAME)
    token, _, signature = cookie.rpartition(".")
    assert web_sessions.read_cookie(f"{token}.{'0' * len(signature)}", web_sessions.session_secret(settings)) is None
    assert web_sessions.read_cookie(token, web_sessions.session_secret(settings)) is None
    path = settings.data_dir / web_sessions.SECRET_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert web_sessions.session_secret(settings) == path.read_text().strip()  # stable across calls and processes
    with pytest.raises(AuthError, match="32 characters"):
        web_sessions.session_secret(Settings(data_dir=settings.data_dir, session_secret="short"))


# ----------------------------------------------------------------------------- single sign-on
ISSUER = "http://127.0.0.1:9400"


def _sso_settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", oidc_metadata_url=f"{ISSUER}/.well-known/openid-configuration",
                    oidc_client_id="healthmon", oidc_client_secret="s3cret", public_url="http://127.0.0.1:8501",
                    oidc_role_map={"hm-admins": "admin", "hm-clinicians": "clinician", "hm-annotators": "annotator"})


def _claims(sub: str, groups, iat: int = 1_800_000_000, **extra):
    return {"iss": ISSUER, "sub": sub, "iat": iat, "nonce": f"n{iat}", "groups": groups, **extra}


def test_a_provider_sign_in_maps_the_claim_to_a_role_and_a_reload_finds_the_same_session(tmp_path):
    settings = _sso_settings(tmp_path)
    factory = connect(settings)
    first, new = web_sessions.sso_session(factory, settings, _claims("u-1", ["staff", "hm-annotators"],
                                                                     preferred_username="ann.lee"))
    assert (first.name, first.role, new) == ("ann.lee", "annotator", True)
    again, new = web_sessions.sso_session(factory, settings, _claims("u-1", ["staff", "hm-annotators"],
                                                                     preferred_username="ann.lee"))
    assert again.user_id == first.user_id and again.token == first.token and not new
    # Several mapped groups: the most privileged role; a later sign-in takes the provider's new role.
    promoted, _ = web_sessions.sso_session(factory, settings, _claims("u-1", ["hm-annotators", "hm-clinicians"],
                                                                      iat=1_800_000_002, preferred_username="ann.lee"))
    assert promoted.user_id == first.user_id and promoted.role == "clinician"


def test_a_person_with_no_mapped_claim_is_refused_and_gets_no_account(tmp_path):
    settings = _sso_settings(tmp_path)
    factory = connect(settings)
    for groups in (["staff"], [], None, "staff"):
        with pytest.raises(AuthError, match="none of your groups is mapped"):
            web_sessions.sso_session(factory, settings, _claims("u-2", groups, preferred_username="nobody"))
    assert [a["name"] for a in accounts.accounts(factory, None)] == []


def test_signing_out_or_deactivation_ends_a_provider_session_and_its_replayed_cookie(tmp_path):
    settings = _sso_settings(tmp_path)
    factory = connect(settings)
    claims = _claims("u-3", ["hm-clinicians"], preferred_username="dr.who")
    user, _ = web_sessions.sso_session(factory, settings, claims)
    accounts.sign_out(factory, user.token)
    with pytest.raises(AuthError, match="signed out"):
        web_sessions.sso_session(factory, settings, claims)  # the provider's old cookie, replayed
    fresh, _ = web_sessions.sso_session(factory, settings, {**claims, "iat": claims["iat"] + 60, "nonce": "other"})
    assert fresh.user_id == user.user_id
    accounts.add_user(factory, None, "ada", "admin", PASSWORD)  # the last admin may not be deactivated
    accounts.set_active(factory, None, "dr.who", False)
    with pytest.raises(AuthError, match="deactivated"):  # healthmon's deactivation wins over the provider
        web_sessions.sso_session(factory, settings, {**claims, "iat": claims["iat"] + 120, "nonce": "third"})


def test_a_provider_account_never_becomes_a_local_account_of_the_same_name(tmp_path):
    settings = _sso_settings(tmp_path)
    factory = connect(settings)
    accounts.add_user(factory, None, "ada", "admin", PASSWORD)
    sso, _ = web_sessions.sso_session(factory, settings, _claims("u-4", ["hm-annotators"], preferred_username="ada"))
    assert sso.name != "ada" and sso.role == "annotator"
    assert {a["name"]: a["role"] for a in accounts.accounts(factory, None)}["ada"] == "admin"


def test_streamlit_secrets_come_from_the_settings_only_when_single_sign_on_is_set_up(tmp_path):
    from healthmon.ui.server import streamlit_secrets

    assert streamlit_secrets(Settings(data_dir=tmp_path / "plain")) == {}
    auth = streamlit_secrets(_sso_settings(tmp_path))["auth"]
    assert auth["redirect_uri"] == "http://127.0.0.1:8501/oauth2callback"
    assert auth[web_auth.SSO_PROVIDER]["client_id"] == "healthmon" and len(auth["cookie_secret"]) >= 32
    with pytest.raises(ValueError, match="HEALTHMON_PUBLIC_URL"):
        streamlit_secrets(Settings(data_dir=tmp_path / "x", oidc_metadata_url="http://x", oidc_client_id="a",
                                   oidc_client_secret="b"))


# ----------------------------------------------------------------------------- opaque link ids
def test_links_carry_a_random_reference_that_resolves_to_the_record_and_is_reused(tmp_path):
    factory = connect(Settings(data_dir=tmp_path / "data"))
    ref = links.link_ref(factory, "patient", "MRN-004521")
    assert "4521" not in ref and len(ref) >= 16
    assert links.link_ref(factory, "patient", "MRN-004521") == ref
    assert links.resolve_ref(factory, "patient", ref) == "MRN-004521"
    assert links.resolve_ref(factory, "case", ref) is None  # a patient's reference never opens a case
    assert links.resolve_ref(factory, "patient", "guess") is None
    assert links.link_ref(factory, "case", 17) != links.link_ref(factory, "case", 18)


# ----------------------------------------------------------------------------- review fixes
def test_an_automatic_poll_checks_the_session_without_keeping_it_alive(site):
    settings, factory, app = site
    client = TestClient(app)
    _sign_in(client)
    token = web_sessions.read_cookie(client.cookies.get(web_sessions.COOKIE_NAME), web_sessions.session_secret(settings))
    from datetime import timedelta

    from healthmon.storage.models import utcnow

    later = utcnow() + timedelta(minutes=settings.session_idle_minutes - 1)
    accounts.check_session(factory, token, settings, now=later, touch=False)  # a poll, one minute before the limit
    with pytest.raises(AuthError, match="expired"):  # ... did not reset the idle timer
        accounts.check_session(factory, token, settings, now=later + timedelta(minutes=2))


def test_an_empty_or_short_key_file_stops_the_server_instead_of_signing_with_it(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / web_sessions.SECRET_FILE).write_text("")
    with pytest.raises(AuthError, match="32 characters or more"):
        web_sessions.session_secret(settings)


def test_provider_names_never_take_an_audit_pseudonym_and_unverified_emails_are_not_names(tmp_path):
    settings = _sso_settings(tmp_path)
    factory = connect(settings)
    cli, _ = web_sessions.sso_session(factory, settings, _claims("u-5", ["hm-annotators"], preferred_username="cli"))
    assert cli.name != "cli" and cli.name.startswith("cli (")
    typed, _ = web_sessions.sso_session(factory, settings, _claims("u-6", ["hm-annotators"], email="dr.smith@x.org",
                                                                   name="Pat Lee"))
    assert typed.name == "Pat Lee"  # the unverified email the person typed is not used
    verified, _ = web_sessions.sso_session(factory, settings, _claims("u-7", ["hm-annotators"], email="amy@x.org",
                                                                      email_verified=True))
    assert verified.name == "amy@x.org"


def test_an_old_provider_sign_in_opens_no_new_session_and_the_last_admin_is_kept(tmp_path):
    settings = _sso_settings(tmp_path)
    factory = connect(settings)
    from healthmon.storage.models import utcnow

    now = int(utcnow().timestamp())
    with pytest.raises(AuthError, match="an older one"):
        web_sessions.sso_session(factory, settings, _claims("u-8", ["hm-admins"], iat=now - 13 * 3600))
    boss, _ = web_sessions.sso_session(factory, settings, _claims("u-8", ["hm-admins"], iat=now))
    assert boss.role == "admin"
    demoted, _ = web_sessions.sso_session(factory, settings, _claims("u-8", ["hm-annotators"], iat=now + 1))
    assert demoted.role == "admin"  # the only active admin: a group change does not lock everyone out
