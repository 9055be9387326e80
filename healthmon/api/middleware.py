"""ASGI middleware for the API: a declared body over the limit refused before it is read, then
metrics and one audit entry per call (queued to :class:`healthmon.api.audit_buffer.AuditBuffer`).

A streamed (chunked) body is counted as it arrives by FastAPI's own ``max_body_size``
(:func:`healthmon.api.app.body_limit`), which answers 413 through the problem handler.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthmon.api.problems import PROBLEM_JSON
from healthmon.api.state import ApiState

log = logging.getLogger("healthmon.api")


def _too_large_body(limit: int, found: str) -> bytes:
    return json.dumps({
        "type": "https://healthmon.readthedocs.io/problems/too-large", "title": "Too large", "status": 413,
        "expected": f"a request body of at most {limit:,} bytes", "found": found,
        "fix": "send fewer notes per request, or ask an admin to raise HEALTHMON_API_MAX_BODY_MB",
        "detail": f"Expected a request body of at most {limit:,} bytes; found {found}. Fix: send fewer notes per "
                  "request, or ask an admin to raise HEALTHMON_API_MAX_BODY_MB",
    }).encode()


METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})


class ApiMiddleware:
    """Wraps one mounted API app (``/api/v1`` or ``/cds-services``)."""

    def __init__(self, app: ASGIApp, state: ApiState) -> None:
        self.app = app
        self.state = state
        self.limit = int(state.settings.api_max_body_mb * 1024 * 1024)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500, "sent": False}
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, status, f"{int(declared):,} bytes (Content-Length)")
            await self._finish(scope, status["code"], started)
            return

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            await self._finish(scope, status["code"], started)

    async def _refuse(self, send: Send, status: dict, found: str) -> None:
        status["code"] = 413
        status["sent"] = True
        body = _too_large_body(self.limit, found)
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _finish(self, scope: Scope, code: int, started: float) -> None:
        route = _route_of(scope)
        # A fixed set: the method is the client's to choose, and each new one would be a new series.
        method = scope.get("method", "") if scope.get("method") in METHODS else "OTHER"
        self.state.metrics.requests.labels(route, method, str(code)).inc()
        self.state.metrics.latency.labels(route, method, str(code)).observe(time.perf_counter() - started)
        request_state: dict[str, Any] = scope.get("state") or {}
        user = request_state.get("user")
        if user is None:
            if code in (401, 403, 429):  # refused before anyone was identified: the server log keeps it
                log.info("refused %s %s: %s", method, route, code)
            return
        self.state.audit.add(user.name, f"{method} {route}", code, sorted(request_state.get("patients") or ()))


def _route_of(scope: Scope) -> str:
    """The route template (``/models/{version}:predict``), not the path, so metrics stay few."""
    route = scope.get("route")
    prefix = scope.get("root_path", "")
    path = getattr(route, "path", None)
    if path:
        return prefix + path
    return prefix + "(unmatched)"
