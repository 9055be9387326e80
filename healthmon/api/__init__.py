"""The REST API and the CDS Hooks service: the second front door, on the same services as the pages.

:func:`healthmon.api.app.service_routes` builds the routes (``/api/v1``, ``/cds-services``,
``/healthz``, ``/readyz``, ``/metrics``); :mod:`healthmon.ui.server` mounts them beside the
Streamlit dashboard in one ASGI app served by uvicorn (``python -m healthmon serve``).
"""
