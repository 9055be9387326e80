"""``/vitals:score`` and ``/patients/{id}/report``: vitals scores (stored nowhere) and the case report.

Both answer what the command line does (``python -m healthmon vitals`` and ``report``), through
the same service functions.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import Response

from healthmon.api.problems import ApiRefusal
from healthmon.api.schemas_patients import LOOKBACK, VitalsScoreRequest, VitalsScoreResponse
from healthmon.api.security import allowed, api_state, touched
from healthmon.errors import IngestError
from healthmon.model.classifier import Classifier
from healthmon.services.accounts import SignedIn
from healthmon.services.reports import case_report, render_document, report_document
from healthmon.services.vitals_scores import score_upload

router = APIRouter(tags=["patients"])
CSV_TYPES = ("text/csv", "text/plain")
UPLOAD_QUERY = ("setting", "spo2_scale", "lookback", "patient_id", "date_order")


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` written in place: a requestBody given through
    ``openapi_extra`` cannot point into the model's own ``$defs``."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk({**defs[ref.rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}})
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


SCORE_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": _inline_refs(VitalsScoreRequest.model_json_schema())},
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"},
                                "description": "One or more device files of one format: a generic vitals CSV, "
                                               "PhysioNet 2012 records, a Fitbit export (*_merged.csv) or FHIR R4 "
                                               "(Bundle or NDJSON). Several `file` parts are read as one upload."}}}},
    "text/csv": {"schema": {"type": "string"},
                 "example": "timestamp,patient,pulse,BP,SpO2,resp,temp,AVPU,O2\n"
                            "2026-03-01T08:00:00Z,p1,112,150/92,91,25,38.6,A,air\n"},
}}}


def _refuse_mixed(request: Request, where: str) -> None:
    given = sorted(set(request.query_params) & set(UPLOAD_QUERY))
    if given:
        raise IngestError(f"the scoring options {where}", f"query parameter(s) {', '.join(given)} as well",
                          "send them in one place only" if where != "in the JSON body" else
                          "put setting, spo2_scale, lookback and date_order in the JSON body (each reading carries "
                          "its patient_id)")


async def _files(request: Request) -> list[tuple[str, bytes]]:
    form = await request.form()
    try:
        others = sorted({key for key in form if key != "file"})
        if others:
            raise IngestError("only `file` parts in the form", f"part(s) {', '.join(others)}",
                              "send setting, spo2_scale, lookback, patient_id and date_order as query parameters")
        uploads = form.getlist("file")
        if not uploads or not all(isinstance(u, UploadFile) for u in uploads):
            raise IngestError("a form part `file` holding a device file", "none" if not uploads else "a text field",
                              "send the file as `file` (curl: -F file=@vitals.csv)")
        return [(u.filename or f"upload-{n + 1}.csv", await u.read()) for n, u in enumerate(uploads)]
    finally:
        await form.close()


@router.post("/vitals:score", response_model=VitalsScoreResponse, openapi_extra=SCORE_BODY,
             summary="NEWS2, blood-pressure category, alerts and summary from readings; nothing is stored",
             description="Scores device readings as `python -m healthmon vitals` does and **stores nothing** (to "
                         "store readings, upload them on the Vitals page or with `vitals --store`). Send either "
                         "JSON `{\"readings\": [...]}`, a CSV body (`text/csv`), or device files as "
                         "`multipart/form-data` parts named `file`. Per patient: NEWS2 at every time point with "
                         "its points per parameter, the blood-pressure category, alerts with the readings behind "
                         "them and the summary sentence; plus what the reader read, every rejected row and every "
                         "flagged artefact. A patient's SpO2 scale on record (a prescribed 88-92 % target) is used "
                         "unless `spo2_scale` is given. The query parameters apply to a CSV or file upload; a JSON "
                         "body carries its options itself.")
async def score_vitals(
    request: Request, user: Annotated[SignedIn, Depends(allowed("vitals.upload"))],
    setting: Annotated[Literal["hospital", "home"] | None, Query(
        description="Unset: preset per patient (hospital where the readings chart consciousness or air/oxygen, "
                    "else home).")] = None,
    spo2_scale: Annotated[int | None, Query(ge=1, le=2, description="NEWS2 SpO2 scale; unset: the patient's scale "
                                            "on record, else 1.")] = None,
    lookback: Annotated[str, Query(max_length=20, pattern=LOOKBACK, description="How old a parameter's latest "
                                   "value may be for NEWS2.")] = "4h",
    patient_id: Annotated[str | None, Query(min_length=1, max_length=200, description="The patient of a CSV without "
                                            "a patient column.")] = None,
    date_order: Annotated[Literal["day/month", "month/day"] | None, Query(
        description="How to read dates such as 03/04/2026 (default day/month, reported as ambiguous).")] = None,
) -> VitalsScoreResponse:
    state = api_state(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    options: dict[str, Any] = {"setting": setting, "spo2_scale": spo2_scale, "lookback": lookback}
    if kind == "application/json" or kind.endswith("+json"):
        _refuse_mixed(request, "in the JSON body")
        try:
            body = VitalsScoreRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                          for e in exc.errors(include_url=False, include_input=False)]) from None
        readings = [r.model_dump(exclude_unset=True) for r in body.readings]
        call = functools.partial(score_upload, readings=readings, date_order=body.date_order, setting=body.setting,
                                 spo2_scale=body.spo2_scale, lookback=body.lookback)
    elif kind == "multipart/form-data":
        call = functools.partial(score_upload, files=await _files(request), patient_id=patient_id,
                                 date_order=date_order, **options)
    elif kind in CSV_TYPES:
        call = functools.partial(score_upload, files=[("upload.csv", await request.body())], patient_id=patient_id,
                                 date_order=date_order, **options)
    else:
        raise ApiRefusal(415, "application/json, text/csv or multipart/form-data", kind or "no Content-Type",
                         "send JSON readings, a CSV body, or device files as form parts named `file`")
    result = await run_in_threadpool(call, state.factory, user)
    touched(request, *(p["patient_id"] for p in result["patients"]))
    return VitalsScoreResponse.model_validate(result)


REPORT_TYPES = {"application/fhir+json": {"schema": {"type": "object"}}, "text/html": {"schema": {"type": "string"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}}}


@router.get("/patients/{patient_id}/report", response_class=Response,
            responses={200: {"description": "The report, with a Content-Disposition file name.",
                             "content": REPORT_TYPES}},
            summary="One patient's case report: PDF, HTML, or a FHIR R4 Bundle with RiskAssessment",
            description="The report `python -m healthmon report` writes: risk scores with the words behind them, "
                        "vitals chart and NEWS2, approved advice with its sources, reviewers and model versions "
                        "(`html`, `pdf`); or the FHIR R4 Bundle (Patient, a RiskAssessment per label, the NEWS2 "
                        "Observation) of the same record (`fhir`). Needs a clinician's or admin's token (a clinical "
                        "document). Explanations nobody stored yet are computed (and stored) with the model "
                        "version that scored each note unless `explain=false`.")
async def patient_report(
    request: Request, user: Annotated[SignedIn, Depends(allowed("advice.decide"))],
    patient_id: Annotated[str, PathParam(min_length=1, max_length=200, description="The patient's id, as in the "
                                         "stored notes' patient_id or the stored vitals.")],
    fmt: Annotated[Literal["fhir", "html", "pdf"], Query(
        alias="format", description="`fhir` (application/fhir+json), `html` or `pdf`.")],
    setting: Annotated[Literal["hospital", "home"] | None, Query(
        description="Unset: preset from the stored readings.")] = None,
    spo2_scale: Annotated[int | None, Query(ge=1, le=2, description="Unset: the scale on record, else 1.")] = None,
    explain: Annotated[bool, Query(description="Compute explanations not stored yet (slower); false: only "
                                   "stored ones are shown.")] = True,
) -> Response:
    state = api_state(request)
    touched(request, patient_id)
    options: dict[str, Any] = {"generated_by": f"{user.name} (api)", "rules_path": state.settings.advice_rules,
                               "setting": setting, "spo2_scale": spo2_scale}
    if fmt == "fhir":
        document = await run_in_threadpool(report_document, state.factory, user, patient_id, "fhir", **options)
    else:
        def load(folder: str) -> Classifier:  # the API's cache: a version is loaded once per process
            return state.model(Path(folder)).classifier

        gather = functools.partial(case_report, state.factory, user, patient_id,
                                   load_classifier=load if explain else None, **options)
        report = await (state.on_model_thread(gather) if explain else run_in_threadpool(gather))
        document = await run_in_threadpool(render_document, report, fmt)  # PDF layout: seconds
    return Response(document.content, media_type=document.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{document.filename}"'})
