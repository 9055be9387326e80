"""Request and response bodies of the REST API (pydantic), shaped after the KServe V1 protocol.

``{"instances": [...]}`` in, ``{"predictions": [...]}`` out, as KServe's V1 data plane and
Label Studio's ML backend (``/predict`` with tasks) have integrators expect.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_NOTE_CHARS = 100_000


class Instance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_NOTE_CHARS, description="The note text, as written.")
    note_id: str | None = Field(None, max_length=200, description="Your id for the note (kept when stored).")
    patient_id: str | None = Field(None, max_length=200, description="The patient's id in your system.")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: list[Instance] = Field(min_length=1, description="The notes to score (at most "
                                      "HEALTHMON_API_MAX_INSTANCES per request).")


class NotePrediction(BaseModel):
    note_id: str | None
    patient_id: str | None
    probabilities: dict[str, float] = Field(description="Calibrated probability per label (a regression "
                                            "version: the target's name mapped to the predicted value).")
    labels: list[str] = Field(description="Labels at or over their threshold (single-label: the most likely).")
    thresholds: dict[str, float] = Field(description="Each label's decision threshold (empty for single-label).")
    value: float | None = Field(None, description="A regression version's predicted value.")
    windows: int = Field(description="How many token windows the note was scored over.")
    case_id: int | None = Field(None, description="The stored case, with `?store=true`.")


class PredictResponse(BaseModel):
    model_version: str
    problem_type: str
    predictions: list[NotePrediction]


class ExplainInstance(Instance):
    target: str | None = Field(None, max_length=200, description="The label to explain; unset, the predicted one.")


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: list[ExplainInstance] = Field(min_length=1)
    faithfulness: bool = Field(True, description="Also measure comprehensiveness and sufficiency (15 more "
                               "forward passes a note).")


class ExplainResponse(BaseModel):
    model_version: str
    explanations: list[dict[str, Any]] = Field(description="One per instance, as `python -m healthmon explain "
                                               "--out x.jsonl` writes them: words with attributions, the "
                                               "convergence delta, faithfulness.")


class CaseList(BaseModel):
    view: Literal["queue", "recent"]
    cases: list[dict[str, Any]]


class CaseBody(BaseModel):
    case: int
    note_id: str
    patient_id: str | None
    text: str
    source: str
    created_at: datetime
    probabilities: dict[str, float]
    predicted: list[str]
    labels: list[str]
    thresholds: dict[str, float]
    problem_type: str
    model_version: str | None
    scored_at: datetime | None
    final_labels: list[str] | None
    review_version: int = Field(description="Send this back as `seen_version` when you review the case.")
    history: list[dict[str, Any]]


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: list[str] = Field(max_length=200, description="The labels the reviewer gives the note (may be empty "
                              "for a multi-label version: none applies).")
    seen_version: int = Field(ge=0, le=2**31 - 1, description="The case's `review_version` when the reviewer read it; a newer "
                              "review since then is a 409 conflict carrying its labels.")
    saw_model_output: bool = Field(True, description="Whether the reviewer saw the model's scores.")
    comment: str = Field("", max_length=5000)


class ReviewResponse(BaseModel):
    case: int
    review_id: int
    labels: list[str] = Field(description="The labels this review stored.")
    review_version: int = Field(description="The case's review version after this review: send it as "
                                "`seen_version` to review the case again.")


class VersionSummary(BaseModel):
    name: str
    status: str = Field(description="candidate, active or retired")
    created_at: datetime
    problem_type: str
    labels: list[str]
    test_metrics: dict[str, Any] = Field(description="The card's test-split figures (accuracy, macro-F1, ECE...).")
    served: bool = Field(description="Whether this is the version `active` names now.")


class VersionList(BaseModel):
    versions: list[VersionSummary]


class PromoteResponse(BaseModel):
    active: str


class AuditList(BaseModel):
    entries: list[dict[str, Any]]
