"""One process, two doors: the Streamlit dashboard at ``/`` and the API beside it, served by uvicorn.

Streamlit's ``st.App`` is the ASGI app; the API, the CDS Hooks service and the probes are
routes added to it (:func:`healthmon.api.app.service_routes`), so both doors share one
process, one database factory and the same services. ``python -m healthmon serve`` runs it.
It lives in healthmon/ui because it is the one place outside the pages that builds Streamlit.
"""

from __future__ import annotations

from pathlib import Path

from healthmon.config import Settings


def _app_script() -> Path:
    """The checkout's app.py when running from a checkout (or an editable install), else the copy an
    installed wheel carries in healthmon/_app with pages/, assets/ and .streamlit/config.toml beside it
    (setup.py). st.App reads the .streamlit/config.toml beside the script, from any working directory."""
    package = Path(__file__).resolve().parents[1]
    checkout = package.parent
    if (checkout / "app.py").is_file() and (checkout / "pages").is_dir():
        return checkout / "app.py"
    return package / "_app" / "app.py"


APP_SCRIPT = _app_script()


def create_server_app(settings: Settings | None = None, *, script: Path = APP_SCRIPT):
    """The dashboard and the API in one ASGI app."""
    import streamlit as st
    from starlette.middleware import Middleware
    from streamlit.runtime.pages_manager import PagesManager

    from healthmon.api.app import build_state, service_routes
    from healthmon.services import web_sessions
    from healthmon.ui import web_auth

    # app.py builds the navigation (st.navigation); the pages/ folder beside it is only where the
    # page files live. Until some session has run app.py, Streamlit takes that folder for an old
    # style multipage app and runs a deep-linked page (a reload of /Case) on its own, without
    # app.py's navigation and account box. Say so before the first session starts.
    PagesManager.uses_pages_directory = False
    state = build_state(settings)
    web_sessions.session_secret(state.settings)  # a missing key is made now; a bad one stops the start
    routes = web_auth.routes(state.settings, state.factory) + service_routes(state)
    gate = Middleware(web_auth.PageGate, settings=state.settings, factory=state.factory)
    return st.App(str(script), routes=routes, middleware=[gate], secrets=streamlit_secrets(state.settings))


def streamlit_secrets(settings: Settings) -> dict:
    """``st.secrets`` for the dashboard: the ``[auth]`` section that ``st.login`` reads, built from
    healthmon's settings (so a hospital configures single sign-on in one place), when it is set up."""
    from healthmon.services import web_sessions
    from healthmon.ui.web_auth import SSO_PROVIDER

    if not web_sessions.sso_configured(settings):
        return {}
    if not settings.public_url:
        raise ValueError("single sign-on needs HEALTHMON_PUBLIC_URL (the address users reach the dashboard at): "
                         "the provider sends them back to <public_url>/oauth2callback")
    return {"auth": {
        "redirect_uri": settings.public_url.rstrip("/") + "/oauth2callback",
        "cookie_secret": web_sessions.session_secret(settings),
        SSO_PROVIDER: {"client_id": settings.oidc_client_id, "client_secret": settings.oidc_client_secret,
                       "server_metadata_url": settings.oidc_metadata_url},
    }}
