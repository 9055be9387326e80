"""Bearer tokens, permissions and the per-token rate limit for every API route but /healthz.

The token is checked against the database on every call (a revoked token or a deactivated
account stops working at once; the role is read afresh), then the route's permission from the
same table the pages use. Who called is left on the request for the audit middleware.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from healthmon.api.problems import ApiRefusal
from healthmon.api.state import ApiState
from healthmon.services import tokens
from healthmon.services.accounts import AuthError, SignedIn
from healthmon.services.api_calls import check_allowed

bearer = HTTPBearer(auto_error=False, description="An API token: `python -m healthmon users token create NAME`, "
                    "or the Admin page's API tokens tab.")


def api_state(request: Request) -> ApiState:
    return request.app.state.healthmon


def authenticated(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> SignedIn:
    """The account behind the request's bearer token, within its rate limit."""
    state = api_state(request)
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise AuthError("an `Authorization: Bearer <token>` header", "no bearer token",
                        "create a token (`python -m healthmon users token create NAME`) and send it")
    # The first characters only (as the Admin page lists tokens): enough to tell which one was refused.
    request.state.token_prefix = credentials.credentials[:8]
    user = tokens.authenticate(state.factory, credentials.credentials)
    request.state.user = user
    key = hashlib.sha256(credentials.credentials.encode("utf-8", "surrogatepass")).hexdigest()
    wait = state.limiter.allow(key)
    if wait > 0:
        raise ApiRefusal(429, f"at most {state.settings.api_rate_per_minute:g} requests a minute per token",
                         "more than that", f"retry after {wait:.1f} s, or ask an admin to raise "
                         "HEALTHMON_API_RATE_PER_MINUTE", headers={"Retry-After": str(max(1, round(wait)))})
    return user


def allowed(permission: str) -> Callable[..., SignedIn]:
    """A dependency: the caller, if their role has ``permission`` (else 403)."""

    def check(user: SignedIn = Depends(authenticated)) -> SignedIn:
        return check_allowed(user, permission)

    check.__name__ = f"allowed_{permission.replace('.', '_')}"
    return check


def touched(request: Request, *patients: str | None) -> None:
    """Record the patients a call reads or writes, for its audit entry."""
    seen = getattr(request.state, "patients", None)
    if seen is None:
        seen = request.state.patients = set()
    seen.update(p for p in patients if p)
