"""The dashboard's sign-in routes and the gate in front of its pages (plain HTTP, no Streamlit run).

``GET /signin`` shows the form (and the hospital's single sign-on button when it is set up);
``POST /signin`` checks the password through :func:`healthmon.services.accounts.sign_in` and
answers with the session cookie: signed, HttpOnly, SameSite=Lax, Secure when the request came
over HTTPS. Streamlit cannot set such a cookie (it talks over a websocket), which is why this is
a route. ``GET /signin/sso`` starts Streamlit's own OpenID Connect login. The gate sends a page
request without a valid session to ``/signin?next=<that page>``, so a reload or a shared link
lands on the same page once signed in.
"""

from __future__ import annotations

import hmac
import html
import secrets
from urllib.parse import urlencode

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from healthmon.config import Settings
from healthmon.services import accounts, web_sessions
from healthmon.services.accounts import AuthError
from healthmon.ui.navigation import PAGES

SIGN_IN_PATH = "/signin"
SSO_PROVIDER = "hospital"
NEXT_COOKIE_NAME = "healthmon_next"
#: Streamlit's identity cookie after a single sign-on; the app checks it on every run.
STREAMLIT_AUTH_COOKIE = "_streamlit_user"
#: The dashboard's own page paths (Streamlit serves its index page for these): the gate guards them.
PAGE_PATHS = frozenset({"/", *(f"/{title}" for title in PAGES)})
MAX_FORM_BYTES = 16 * 1024


def safe_next(value: str | None) -> str:
    """A path on this server to go to after signing in; anything else (another host) becomes ``/``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or "\n" in value:
        return "/"
    return value


def sign_in_url(next_path: str) -> str:
    return f"{SIGN_IN_PATH}?{urlencode({'next': safe_next(next_path)})}"


def _page(settings: Settings, next_path: str, csrf: str, *, error: str = "", name: str = "") -> str:
    sso = ""
    if web_sessions.sso_configured(settings):
        sso = (f'<p><a class="sso" href="{SIGN_IN_PATH}/sso?{html.escape(urlencode({"next": next_path}))}">'
               f"{html.escape(settings.oidc_provider_name)}</a></p><p class=\"or\">or with a healthmon account</p>")
    notice = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>Sign in · healthmon</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f2f6f8; color: #1c2b33; margin: 0; }}
main {{ max-width: 24rem; margin: 10vh auto; background: #fff; padding: 2rem; border-radius: .5rem;
        box-shadow: 0 1px 4px rgba(0,0,0,.12); }}
h1 {{ margin-top: 0; font-size: 1.5rem; }} label {{ display: block; margin-top: 1rem; }}
input {{ width: 100%; padding: .5rem; font-size: 1rem; box-sizing: border-box; }}
button, a.sso {{ display: block; width: 100%; margin-top: 1.25rem; padding: .6rem; font-size: 1rem; border: 0;
        border-radius: .35rem; background: #0b6e99; color: #fff; text-align: center; text-decoration: none;
        cursor: pointer; box-sizing: border-box; }}
.error {{ color: #9b1c1c; background: #fdecec; padding: .6rem; border-radius: .35rem; }}
.or, .hint {{ color: #5b6b73; font-size: .9rem; }}
</style></head><body><main>
<h1>Sign in to healthmon</h1>
<p class="hint">Calibrated risk scores from clinical notes, for preventive-care review.</p>
{notice}{sso}
<form method="post" action="{SIGN_IN_PATH}">
<input type="hidden" name="csrf" value="{html.escape(csrf)}">
<input type="hidden" name="next" value="{html.escape(next_path)}">
<label for="name">User name</label>
<input id="name" name="name" autocomplete="username" required value="{html.escape(name)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
<p class="hint">No account yet? <code>make run</code> prints the demo account once; an admin adds others on the
Admin page or with <code>healthmon users add NAME --role ROLE</code>.</p>
</main></body></html>"""


def _secure(request: Request) -> bool:
    # uvicorn rewrites the scheme from X-Forwarded-Proto when the proxy is trusted (127.0.0.1).
    return request.url.scheme == "https"


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def _form_page(request: Request, settings: Settings, next_path: str, *, error: str = "", name: str = "",
               status: int = 200) -> Response:
    csrf = secrets.token_urlsafe(24)
    response = _no_store(HTMLResponse(_page(settings, next_path, csrf, error=error, name=name), status_code=status))
    response.set_cookie(web_sessions.CSRF_COOKIE_NAME, csrf, path=SIGN_IN_PATH, httponly=True, samesite="strict",
                        secure=_secure(request), max_age=3600)
    return response


def routes(settings: Settings, factory) -> list[Route]:  # factory: the sessionmaker
    """The sign-in routes for ``st.App(routes=...)``."""

    async def show(request: Request) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        cookie = request.cookies.get(web_sessions.COOKIE_NAME)
        if cookie and await anyio.to_thread.run_sync(web_sessions.cookie_session, factory, settings, cookie):
            return _no_store(RedirectResponse(next_path, status_code=303))  # signed in already
        response = _form_page(request, settings, next_path)
        if cookie:  # a stale session cookie: the browser need not keep sending it
            response.delete_cookie(web_sessions.COOKIE_NAME, path="/")
        return response

    async def submit(request: Request) -> Response:
        length = request.headers.get("content-length", "")
        if not length.isdigit() or int(length) > MAX_FORM_BYTES:  # a browser's form always says its size
            return _no_store(HTMLResponse("Sign-in form missing its length or too large.", status_code=413))
        form = await request.form(max_files=0, max_fields=8)
        next_path = safe_next(str(form.get("next") or "/"))
        name, password = str(form.get("name") or ""), str(form.get("password") or "")
        expected = request.cookies.get(web_sessions.CSRF_COOKIE_NAME, "")
        if not expected or not hmac.compare_digest(expected, str(form.get("csrf") or "")):
            # Login CSRF: another site must not sign a clinician in as somebody else.
            return _form_page(request, settings, next_path, name=name, status=403,
                              error="The sign-in form had expired or came from another site. Please sign in again.")
        address = request.client.host if request.client else None
        try:
            user = await anyio.to_thread.run_sync(
                lambda: accounts.sign_in(factory, name, password, settings, address=address))
        except AuthError as exc:
            return _form_page(request, settings, next_path, name=name, status=401,
                              error=f"Sign-in refused: {exc.found}. {exc.fix[0].upper()}{exc.fix[1:]}.")
        response = _no_store(RedirectResponse(next_path, status_code=303))
        secret = web_sessions.session_secret(settings)
        response.set_cookie(web_sessions.COOKIE_NAME, web_sessions.sign_cookie(user.token, secret), path="/",
                            httponly=True, samesite="lax", secure=_secure(request),
                            max_age=int(settings.session_max_hours * 3600))
        response.delete_cookie(web_sessions.CSRF_COOKIE_NAME, path=SIGN_IN_PATH)
        return response

    async def sso(request: Request) -> Response:
        if not web_sessions.sso_configured(settings):
            return RedirectResponse(SIGN_IN_PATH, status_code=303)
        from streamlit.user_info import generate_login_redirect_url

        # Streamlit's own login route with its signed provider token (what st.login() sends the
        # browser to); after the provider, Streamlit's callback lands on "/", where the app opens
        # the healthmon session from the ID token's claims.
        response = _no_store(RedirectResponse(generate_login_redirect_url(SSO_PROVIDER), status_code=303))
        # Streamlit's callback always lands on "/": the page that asked for the sign-in is kept
        # here for the first page run of the new session to open.
        response.set_cookie(NEXT_COOKIE_NAME, safe_next(request.query_params.get("next")), path="/", httponly=True,
                            samesite="lax", secure=_secure(request), max_age=600)
        return response

    return [Route(SIGN_IN_PATH, show, methods=["GET"]), Route(SIGN_IN_PATH, submit, methods=["POST"]),
            Route(f"{SIGN_IN_PATH}/sso", sso, methods=["GET"])]


class PageGate:
    """Sends a page request without a valid session to the sign-in page, remembering the page.

    Only the dashboard's page paths are gated: Streamlit's assets, its websocket and the API have
    their own checks (every page run checks the session again; the API wants a bearer token).
    """

    def __init__(self, app: ASGIApp, settings: Settings, factory) -> None:
        self.app, self.settings, self.factory = app, settings, factory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or scope["path"] not in PAGE_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        cookie = request.cookies.get(web_sessions.COOKIE_NAME)
        signed_in = cookie and await anyio.to_thread.run_sync(
            web_sessions.cookie_session, self.factory, self.settings, cookie)
        # A provider sign-in is checked by the page run itself (its claims are in Streamlit's
        # signed cookie, which only Streamlit reads).
        if signed_in or (web_sessions.sso_configured(self.settings)
                          and any(name.startswith(STREAMLIT_AUTH_COOKIE) for name in request.cookies)):
            await self.app(scope, receive, send)
            return
        target = scope["path"] + (f"?{scope['query_string'].decode('latin-1')}" if scope["query_string"] else "")
        response = _no_store(RedirectResponse(sign_in_url(target), status_code=303))
        await response(scope, receive, send)
