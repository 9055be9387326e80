"""``/models/{version}:predict`` and ``/models/{version}:explain``: a model version's scores and reasons."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from healthmon.api.problems import ApiRefusal
from healthmon.api.schemas import (
    ExplainRequest,
    ExplainResponse,
    NotePrediction,
    PredictRequest,
    PredictResponse,
    PromoteResponse,
    VersionList,
    VersionSummary,
)
from healthmon.api.security import allowed, api_state, touched
from healthmon.api.state import ApiState, ServedModel
from healthmon.services.accounts import SignedIn
from healthmon.services.api_calls import list_model_versions, promote_version, resolve_version, store_api_predictions
from healthmon.types import Note, Prediction

router = APIRouter(tags=["models"])
Version = Annotated[str, PathParam(description="A registered version's name, or `active` for the served one.",
                                   max_length=200)]


def _check_count(state: ApiState, n: int) -> None:
    if n > state.settings.api_max_instances:
        raise ApiRefusal(413, f"at most {state.settings.api_max_instances} instances per request",
                         f"{n} instances", "split them over several requests, or queue them as a batch job on "
                         "the Notes page or with `python -m healthmon predict`")


async def served(state: ApiState, version: str) -> ServedModel:
    folder = await run_in_threadpool(resolve_version, state.factory, state.settings, version)
    cached = state.cached(folder)
    return cached if cached is not None else await run_in_threadpool(state.model, folder)


def prediction_body(p: Prediction, note: Note, thresholds: dict[str, float], case_id: int | None) -> NotePrediction:
    return NotePrediction(note_id=note.note_id, patient_id=note.patient_id, probabilities=p.probabilities,
                          labels=list(p.labels), thresholds=thresholds, value=p.value, windows=p.windows,
                          case_id=case_id)


@router.post("/models/{version}:predict", response_model=PredictResponse, summary="Calibrated risk for notes")
async def predict(request: Request, body: PredictRequest, version: Version,
                  user: Annotated[SignedIn, Depends(allowed("notes.predict"))],
                  store: Annotated[bool, Query(description="Also store the notes and scores as cases for "
                                               "review (as `predict --store`).")] = False) -> PredictResponse:
    state = api_state(request)
    _check_count(state, len(body.instances))
    touched(request, *(i.patient_id for i in body.instances))
    model = await served(state, version)
    predictions = await model.batcher.submit([i.text for i in body.instances])
    notes = [Note(text=i.text, note_id=i.note_id or f"api:{n + 1}", patient_id=i.patient_id, source="api")
             for n, i in enumerate(body.instances)]
    case_ids: list[int | None] = [None] * len(notes)
    if store:
        case_ids = list(await run_in_threadpool(store_api_predictions, state.factory, user, notes, predictions,
                                                model.folder))
    for p in predictions:
        for label in p.labels:
            state.metrics.predictions.labels(label).inc()
    thresholds = dict(model.classifier.card.thresholds or {}) if model.classifier.multi_label else {}
    return PredictResponse(
        model_version=model.classifier.name, problem_type=model.classifier.card.problem_type,
        predictions=[prediction_body(p, note, thresholds, case_id)
                     for p, note, case_id in zip(predictions, notes, case_ids)])


@router.post("/models/{version}:explain", response_model=ExplainResponse,
             summary="Word attributions behind each score (integrated gradients)")
async def explain(request: Request, body: ExplainRequest, version: Version,
                  user: Annotated[SignedIn, Depends(allowed("notes.predict"))]) -> ExplainResponse:
    from healthmon.explain import ExplainOptions, explain_many
    from healthmon.explain.render import to_dict

    state = api_state(request)
    # Explanations cost 20-60 forward and backward passes a note: a tighter cap than predict's.
    cap = max(1, state.settings.api_max_instances // 16)
    if len(body.instances) > cap:
        raise ApiRefusal(413, f"at most {cap} instances per explain request", f"{len(body.instances)} instances",
                         "split them over several requests, or queue a batch explanation on the Notes page")
    touched(request, *(i.patient_id for i in body.instances))
    model = await served(state, version)
    labels = set(model.classifier.labels)
    unknown = sorted({i.target for i in body.instances if i.target is not None and i.target not in labels})
    if unknown:
        from healthmon.errors import IngestError

        raise IngestError(f"a target among the version's labels ({', '.join(model.classifier.labels)})",
                          ", ".join(map(repr, unknown)), "leave `target` out to explain the predicted label")
    options = ExplainOptions(faithfulness=body.faithfulness)
    texts = [i.text for i in body.instances]
    targets = [i.target for i in body.instances]
    loop_result = await state.on_model_thread(explain_many, model.classifier, texts, targets, options=options)
    explanations = []
    for instance, e in zip(body.instances, loop_result):
        data = to_dict(e)
        data["note_id"] = instance.note_id
        data["patient_id"] = instance.patient_id
        explanations.append(data)
    return ExplainResponse(model_version=model.classifier.name, explanations=explanations)


@router.get("/models", response_model=VersionList, summary="Registered model versions, newest first")
def versions(request: Request, user: Annotated[SignedIn, Depends(allowed("models.view"))]) -> VersionList:
    state = api_state(request)
    return VersionList(versions=[VersionSummary(**v) for v in list_model_versions(state.factory, state.settings,
                                                                                  user)])


@router.post("/models/{version}:promote", response_model=PromoteResponse,
             summary="Serve this version from now on (admins; audited)")
def promote(request: Request, version: Version,
            user: Annotated[SignedIn, Depends(allowed("models.promote"))]) -> PromoteResponse:
    state = api_state(request)
    return PromoteResponse(active=promote_version(state.factory, user, version))
