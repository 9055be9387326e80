"""CDS Hooks 2.0 service (https://cds-hooks.hl7.org/): ``GET /cds-services`` and ``POST /cds-services/healthmon-risk``.

On ``patient-view`` the EHR sends the patient, their recent notes (DocumentReference) and vital
signs (Observation) as prefetch; healthmon answers cards: calibrated risk per label (with the
words behind the top risk and a link to the stored case), NEWS2 and blood pressure, and the
advice rules that fire. Composition lives in :mod:`healthmon.api.cds_cards`; this module calls
the model and the services.

Two departures from the specification, both deliberate:

* **Authentication.** The CDS Hooks JWT scheme (the EHR signing each call with its own key) is
  replaced by a healthmon API token that the EHR sends as ``Authorization: Bearer <token>``, on
  discovery too, like every healthmon route but ``/healthz``. Configure the token of a clinician
  account in the EHR's CDS service registration (scoring needs ``notes.predict``).
* **No FHIR queries.** Only the prefetch is read: ``fhirServer`` and ``fhirAuthorization`` are
  accepted and ignored, and a missing prefetch key means no data of that kind.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from healthmon.api.cds_cards import (
    SERVICE_ID,
    Card,
    HookRequest,
    NoteScore,
    PrefetchData,
    assess_vitals,
    carded_labels,
    compose_cards,
    discovery,
    findings,
    fired_advice,
    read_prefetch,
    top_words,
)
from healthmon.api.routes_models import served
from healthmon.api.security import allowed, api_state, authenticated, touched
from healthmon.api.state import ApiState, ServedModel
from healthmon.errors import ModelError
from healthmon.services.accounts import SignedIn
from healthmon.services.api_calls import store_api_predictions
from healthmon.services.links import link_ref
from healthmon.services.patients import recorded_spo2_scale

log = logging.getLogger("healthmon.api")
router = APIRouter(tags=["cds-hooks"])


@router.get("/", summary="CDS Hooks discovery: the services this server offers")
def discover(user: Annotated[SignedIn, Depends(authenticated)]) -> dict[str, Any]:
    return discovery()


def _base_url(request: Request) -> str:
    """Where clinicians reach the dashboard: ``public_url``, else the address this request came to."""
    public = api_state(request).settings.public_url
    if public:
        return public.rstrip("/")
    # The app root, not the /cds-services mount: the dashboard's pages live at the root.
    root = request.scope.get("app_root_path", "")
    return f"{request.url.scheme}://{request.url.netloc}{root}".rstrip("/")


async def _explain_top(state: ApiState, model: ServedModel, text: str, label: str) -> list[str]:
    """The 5 words with the largest positive attribution to ``label`` in ``text`` (none if it cannot be explained)."""
    from healthmon.explain import ExplainOptions, explain_many

    target = None if model.classifier.card.problem_type == "regression" else label
    try:
        [explained] = await state.on_model_thread(explain_many, model.classifier, [text], [target], urgent=True,
                                                  options=ExplainOptions(faithfulness=False))
    except ModelError:  # the cards still carry the scores; the reason is in the server log
        log.exception("could not explain the top risk of a CDS Hooks call")
        return []
    return top_words(explained.words)


@router.post(f"/{SERVICE_ID}", summary="patient-view: calibrated risk, NEWS2 and blood pressure, fired advice")
async def healthmon_risk(request: Request, body: HookRequest,
                         user: Annotated[SignedIn, Depends(allowed("notes.predict"))]) -> dict[str, Any]:
    state = api_state(request)
    patient_id = body.context.patientId
    touched(request, patient_id)
    data = await run_in_threadpool(read_prefetch, body.prefetch, patient_id, max_notes=state.settings.api_max_instances)
    scores: list[NoteScore] = []
    thresholds: dict[str, float] = {}
    words: list[str] = []
    problem = None
    if data.notes:
        try:
            model = await served(state, "active")
        except ModelError as exc:  # the vitals and advice cards still help; the card says why
            problem = exc
        else:
            predictions = await model.batcher.submit([n.text for n in data.notes])
            case_ids = await run_in_threadpool(store_api_predictions, state.factory, user, data.notes, predictions,
                                               model.folder)
            # The card's link names the case by its opaque id: EHR logs and browser history get no case number.
            refs = await run_in_threadpool(lambda: [None if c is None else link_ref(state.factory, "case", c)
                                                    for c in case_ids])
            scores = [NoteScore(n, p, c, r) for n, p, c, r in zip(data.notes, predictions, case_ids, refs)]
            for p in predictions:
                for label in p.labels:
                    state.metrics.predictions.labels(label).inc()
            if model.classifier.multi_label:
                thresholds = dict(model.classifier.card.thresholds or {})
            carded = carded_labels(scores, thresholds)
            if carded:
                label, best = carded[0]
                words = await _explain_top(state, model, best.note.text, label)
    recorded = await run_in_threadpool(recorded_spo2_scale, state.factory, patient_id)
    cards = await run_in_threadpool(_cards, state, data, scores, thresholds, words,
                                    recorded.scale if recorded is not None else 1, _base_url(request), problem)
    return {"cards": [card.to_dict() for card in cards]}


def _cards(state: ApiState, data: PrefetchData, scores: list[NoteScore], thresholds: dict[str, float],
           words: list[str], spo2_scale: int, base_url: str, problem: ModelError | None) -> list[Card]:
    """The cards of one call (blocking: vitals scores and the rule file)."""
    from healthmon.advice.rules import load_rules

    assessment = assess_vitals(data, spo2_scale=spo2_scale)
    advice = None
    if scores or assessment is not None:  # advice on an empty prefetch would only read absence as a finding
        advice = fired_advice(load_rules(state.settings.advice_rules), findings(data, scores, assessment), data)
    return compose_cards(data, scores, thresholds, words, assessment, advice, base_url, model_problem=problem)


__all__ = ["router"]
