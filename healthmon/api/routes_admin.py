"""``/audit``: the audit log for admins (the same permission as the Admin page's tab)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from healthmon.api.schemas import AuditList
from healthmon.api.security import authenticated
from healthmon.services.accounts import SignedIn, audit_log
from healthmon.services.api_calls import check_allowed

router = APIRouter(tags=["admin"])


@router.get("/audit", response_model=AuditList, summary="Audit entries, newest first (admins)")
def audit(request: Request, user: Annotated[SignedIn, Depends(authenticated)],
          action: Annotated[str, Query(max_length=100, description="Only this action, e.g. `api.call`.")] = "",
          actor: Annotated[str, Query(max_length=120, description="Only this account's entries.")] = "",
          limit: Annotated[int, Query(ge=1, le=5000)] = 200) -> AuditList:
    state = request.app.state.healthmon
    check_allowed(user, "audit.view")  # before waiting on anything for the caller
    state.audit.flush()  # this process's earlier calls are in the log before it is read
    return AuditList(entries=audit_log(state.factory, user, action=action, actor=actor, limit=limit))
