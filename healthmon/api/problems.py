"""Errors as RFC 9457 problem details (``application/problem+json``) with healthmon's expected / found / fix.

A refusal says what was expected, what was found and how to fix it, as the CLI does. An
unexpected error answers 500 with an incident id only: the traceback, which may hold patient
text, goes to the server log under that id.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from healthmon.errors import HealthmonError, ModelError, NotFoundError, ReviewConflict
from healthmon.services.accounts import AuthError, PermissionDenied
from healthmon.services.api_calls import UnknownVersion

log = logging.getLogger("healthmon.api")
PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://healthmon.readthedocs.io/problems/"


class ApiRefusal(HealthmonError):
    """A refusal that belongs to HTTP itself (body too large, rate limited, bad media type)."""

    def __init__(self, status: int, expected: str, found: str, fix: str, *, headers: dict[str, str] | None = None):
        super().__init__(expected, found, fix)
        self.status = status
        self.headers = headers or {}


def problem(status: int, title: str, *, expected: str = "", found: str = "", fix: str = "", instance: str = "",
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + title.lower().replace(" ", "-"), "title": title, "status": status}
    if expected:
        body["detail"] = f"Expected {expected}; found {found}. Fix: {fix}"
        body.update(expected=expected, found=found, fix=fix)
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def status_of(exc: HealthmonError) -> tuple[int, str]:
    """The HTTP status and title for a healthmon error."""
    if isinstance(exc, ApiRefusal):
        return exc.status, {413: "Too large", 415: "Unsupported media type", 429: "Too many requests"}.get(
            exc.status, "Refused")
    if isinstance(exc, AuthError):
        return 401, "Unauthorized"
    if isinstance(exc, PermissionDenied):
        return 403, "Forbidden"
    if isinstance(exc, ReviewConflict):
        return 409, "Conflict"
    if isinstance(exc, (UnknownVersion, NotFoundError)):
        return 404, "Not found"
    if isinstance(exc, ModelError):
        return 422, "Model cannot answer"
    return 400, "Bad request"


def healthmon_problem(request: Request, exc: HealthmonError) -> JSONResponse:
    status, title = status_of(exc)
    headers = dict(getattr(exc, "headers", {}) or {})
    extra: dict[str, Any] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="healthmon"'
    if isinstance(exc, ReviewConflict):
        extra = {"case": exc.note_id, "seen_version": exc.seen_version, "current_version": exc.current_version,
                 "current_labels": exc.current_labels}
    return problem(status, title, expected=exc.expected, found=exc.found, fix=exc.fix, instance=request.url.path,
                   headers=headers, **extra)


def _where(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "the body"


def validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
    # The submitted values are not echoed: they may be patient text.
    errors = exc.errors()
    found = "; ".join(f"{_where(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in errors[:10])
    if len(errors) > 10:
        found += f"; and {len(errors) - 10} more"
    return problem(422, "Invalid request", expected="a request matching the route's schema "
                   "(see /api/v1/openapi.json)", found=found or "an invalid request",
                   fix="correct the fields named and send it again", instance=request.url.path,
                   errors=[{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                           for e in errors[:50]])


def http_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        return problem(404, "Not found", expected="a route of the healthmon API", found=request.url.path,
                       fix="see /api/v1/openapi.json for the routes", instance=request.url.path)
    if exc.status_code == 413:  # FastAPI's max_body_size, on a streamed body
        return problem(413, "Too large", expected="a request body within HEALTHMON_API_MAX_BODY_MB",
                       found="a larger body", fix="send fewer notes per request, or ask an admin to raise "
                       "HEALTHMON_API_MAX_BODY_MB", instance=request.url.path)
    if exc.status_code == 405:
        return problem(405, "Method not allowed", expected="a method the route accepts",
                       found=request.method, fix="see /api/v1/openapi.json", instance=request.url.path,
                       headers=dict(exc.headers or {}))
    return problem(exc.status_code, "Refused", expected="a request the route accepts", found=str(exc.detail),
                   fix="see /api/v1/openapi.json", instance=request.url.path, headers=dict(exc.headers or {}))


def internal_problem(request: Request, exc: Exception) -> JSONResponse:
    incident = uuid.uuid4().hex[:12]
    log.error("incident %s on %s %s", incident, request.method, request.url.path, exc_info=exc)
    return problem(500, "Internal error", instance=request.url.path, incident=incident,
                   detail=f"An unexpected error; the server log has the details under incident {incident}.")


def install(app: Any) -> None:
    """Register the problem handlers on a FastAPI app."""
    app.add_exception_handler(HealthmonError, healthmon_problem)
    app.add_exception_handler(RequestValidationError, validation_problem)
    app.add_exception_handler(StarletteHTTPException, http_problem)
    app.add_exception_handler(Exception, internal_problem)
