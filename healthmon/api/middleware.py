"""ASGI middleware for the API: a declared body over the limit refused before it is read, then
metrics and one audit entry per call (queued to :class:`healthmon.api.audit_buffer.AuditBuffer`).

A streamed (chunked) body is counted as it arrives by FastAPI's own ``max_body_size``
(:attr:`healthmon.api.state.ApiState.max_body_bytes`), which answers 413 through the problem handler.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthmon.api.problems import problem
from healthmon.api.state import FAILED_AUTH_PER_MINUTE, ApiState

log = logging.getLogger("healthmon.api")
NO_ACCOUNT = "(no valid token)"
METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})


class ApiMiddleware:
    """Wraps one mounted API app (``/api/v1`` or ``/cds-services``)."""

    def __init__(self, app: ASGIApp, state: ApiState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.state.failed_auth.waiting(client)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        limit = self.state.max_body_bytes
        refusal = None
        if wait > 0:  # this address sent too many refused tokens: answered before any lookup
            refusal = problem(429, "Too many requests", expected="fewer refused tokens from one address",
                              found=f"more than {FAILED_AUTH_PER_MINUTE} in a minute from {client}",
                              fix="check the token the client sends; requests from this address are accepted "
                              "again shortly", headers={"Retry-After": str(max(1, round(wait)))})
        elif declared is not None and declared.isdigit() and int(declared) > limit:
            refusal = problem(413, "Too large", expected=f"a request body of at most {limit:,} bytes",
                              found=f"{int(declared):,} bytes (Content-Length)",
                              fix="send fewer notes per request, or ask an admin to raise HEALTHMON_API_MAX_BODY_MB")
        if refusal is not None:
            status["code"] = refusal.status_code
            await refusal(scope, receive, send)
            await self._finish(scope, status["code"], started)
            return

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            await self._finish(scope, status["code"], started)

    async def _finish(self, scope: Scope, code: int, started: float) -> None:
        route = _route_of(scope)
        # A fixed set: the method is the client's to choose, and each new one would be a new series.
        method = scope.get("method", "") if scope.get("method") in METHODS else "OTHER"
        self.state.metrics.requests.labels(route, method, str(code)).inc()
        self.state.metrics.latency.labels(route, method, str(code)).observe(time.perf_counter() - started)
        request_state: dict[str, Any] = scope.get("state") or {}
        user = request_state.get("user")
        if user is None:
            if code == 401:
                # Audited without an account, with the refused token's first characters and the
                # address; each refusal also uses up one of the address's FAILED_AUTH_PER_MINUTE.
                client = (scope.get("client") or ("unknown", 0))[0]
                self.state.failed_auth.allow(client)
                self.state.audit.add(NO_ACCOUNT, f"{method} {route}", code, (),
                                     {"client": client, "token_prefix": request_state.get("token_prefix")})
            elif code in (403, 413, 429):  # refused before anyone was identified: the server log keeps it
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
