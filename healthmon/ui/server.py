"""One process, two doors: the Streamlit dashboard at ``/`` and the API beside it, served by uvicorn.

Streamlit's ``st.App`` is the ASGI app; the API, the CDS Hooks service and the probes are
routes added to it (:func:`healthmon.api.app.service_routes`), so both doors share one
process, one database factory and the same services. ``python -m healthmon serve`` runs it.
It lives in healthmon/ui because it is the one place outside the pages that builds Streamlit.
"""

from __future__ import annotations

from pathlib import Path

from healthmon.config import Settings

APP_SCRIPT = Path(__file__).resolve().parents[2] / "app.py"


def create_server_app(settings: Settings | None = None, *, script: Path = APP_SCRIPT):
    """The dashboard and the API in one ASGI app."""
    import streamlit as st

    from healthmon.api.app import build_state, service_routes

    state = build_state(settings)
    app = st.App(str(script), routes=service_routes(state))
    return app
