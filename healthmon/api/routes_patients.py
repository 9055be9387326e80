"""``/vitals:score`` and ``/patients/{id}/report``: vitals scores and the case report (being built)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["patients"])
