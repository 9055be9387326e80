"""``/cases``: the review queue, one case, and a reviewer's label (409 when someone labelled it first)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from healthmon.api.schemas import CaseBody, CaseList, ReviewRequest, ReviewResponse
from healthmon.api.security import authenticated, touched
from healthmon.services.accounts import SignedIn
from healthmon.services.cases import list_cases, review_case, view_case

router = APIRouter(tags=["cases"])
CaseId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The case id (the stored note's id).")]


@router.get("/cases", response_model=CaseList, summary="The review queue, or the newest scored cases")
def cases(request: Request, user: Annotated[SignedIn, Depends(authenticated)],
          view: Annotated[Literal["queue", "recent"], Query(description="`queue`: what this reviewer should label "
                                                            "next (disagreements, then most uncertain); `recent`: "
                                                            "the newest scored.")] = "queue",
          limit: Annotated[int, Query(ge=1, le=500)] = 20,
          search: Annotated[str, Query(max_length=200, description="With `recent`: text or note id to match.")] = "",
          ) -> CaseList:
    state = request.app.state.healthmon
    rows = list_cases(state.factory, user, view=view, limit=limit, search=search)
    touched(request, *(row["patient_id"] for row in rows))
    return CaseList(view=view, cases=rows)


@router.get("/cases/{case_id}", response_model=CaseBody, summary="One case: note, scores, label history")
def case(request: Request, case_id: CaseId, user: Annotated[SignedIn, Depends(authenticated)]) -> CaseBody:
    state = request.app.state.healthmon
    view = view_case(state.factory, user, case_id)
    touched(request, view.patient)
    return CaseBody(case=view.note_id, note_id=view.external_id, patient_id=view.patient, text=view.text,
                    source=view.source, created_at=view.created_at, probabilities=view.probabilities,
                    predicted=list(view.predicted), labels=list(view.labels), thresholds=view.thresholds,
                    problem_type=view.problem_type, model_version=view.version, scored_at=view.scored_at,
                    final_labels=None if view.final_labels is None else list(view.final_labels),
                    review_version=view.review_version, history=view.history)


@router.post("/cases/{case_id}/reviews", response_model=ReviewResponse, status_code=201,
             summary="A reviewer's label; 409 with the newer label when the case changed since `seen_version`")
async def review(request: Request, case_id: CaseId, body: ReviewRequest,
                 user: Annotated[SignedIn, Depends(authenticated)]) -> ReviewResponse:
    state = request.app.state.healthmon
    stored = await run_in_threadpool(review_case, state.factory, user, case_id, body.labels,
                                     seen_version=body.seen_version, saw_model_output=body.saw_model_output,
                                     comment=body.comment)
    after = await run_in_threadpool(view_case, state.factory, user, case_id)
    touched(request, after.patient)
    # What this review wrote, not a second read: another reviewer may have posted since, and the
    # caller must not receive their version as its own `seen_version`.
    return ReviewResponse(case=case_id, review_id=stored.id, labels=list(stored.labels),
                          review_version=body.seen_version + 1)
