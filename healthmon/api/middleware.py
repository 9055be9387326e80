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
from healthmon.api.state import FAILED_AUTH_PER_MINUTE, ApiState

log = logging.getLogger("healthmon.api")


def _problem_body(status: int, title: str, expected: str, found: str, fix: str) -> bytes:
    return json.dumps({"type": "https://healthmon.readthedocs.io/problems/" + title.lower().replace(" ", "-"),
                       "title": title, "status": status, "expected": expected, "found": found, "fix": fix,
                       "detail": f"Expected {expected}; found {found}. Fix: {fix}"}).encode()


def _too_large_body(limit: int, found: str) -> bytes:
    return json.dumps({
        "type": "https://healthmon.readthedocs.io/problems/too-large", "title": "Too large", "status": 413,
        "expected": f"a request body of at most {limit:,} bytes", "found": found,
        "fix": "send fewer notes per request, or ask an admin to raise HEALTHMON_API_MAX_BODY_MB",
        "detail": f"Expected a request body of at most {limit:,} bytes; found {found}. Fix: send fewer notes per "
                  "request, or ask an admin to raise HEALTHMON_API_MAX_BODY_MB",
    }).encode()


NO_ACCOUNT = "(no valid token)"
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
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.state.failed_auth.waiting(client)
        if wait > 0:  # this address sent too many refused tokens: answered before any lookup
            await self._send_problem(send, status, 429, _problem_body(
                429, "Too many requests", "fewer refused tokens from one address",
                f"more than {FAILED_AUTH_PER_MINUTE} in a minute from {client}",
                "check the token the client sends; requests from this address are accepted again shortly"),
                headers=[(b"retry-after", str(max(1, round(wait))).encode())])
            await self._finish(scope, status["code"], started)
            return
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
        await self._send_problem(send, status, 413, _too_large_body(self.limit, found))

    @staticmethod
    async def _send_problem(send: Send, status: dict, code: int, body: bytes,
                            headers: list[tuple[bytes, bytes]] | None = None) -> None:
        status["code"] = code
        status["sent"] = True
        await send({"type": "http.response.start", "status": code,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
                                *(headers or [])]})
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
