"""CDS Hooks 2.0 without the network: the discovery document, the hook request, prefetch -> notes and vitals, cards.

Pure functions over values: :mod:`healthmon.api.cds` scores the notes with the served model,
stores them as cases and explains the top one; this module reads the prefetched FHIR resources
(through the FHIR reader of :mod:`healthmon.ingest.fhir`, as a device file would be read), scores
the vitals, fires the advice rules and turns all of it into cards. Only what the EHR prefetched is
read: healthmon never queries ``fhirServer``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from healthmon.advice.engine import AdviceResult, PatientFindings, evaluate
from healthmon.advice.rules import Rule
from healthmon.advice.snapshot import age_on, vitals_facts
from healthmon.errors import HealthmonError, IngestError
from healthmon.escaping import escape_markdown
from healthmon.ingest.fhir import read_fhir
from healthmon.types import Note, Prediction
from healthmon.vitals.assess import VitalsAssessment, assess_patient, readings_setting
from healthmon.vitals.parameters import UNITS

SERVICE_ID = "healthmon-risk"
HOOK = "patient-view"
PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "notes": "DocumentReference?patient={{context.patientId}}&_sort=-date&_count=20",
    "vitals": "Observation?patient={{context.patientId}}&category=vital-signs&_sort=-date&_count=200",
}
PREFETCH_TYPES = {"patient": "Patient", "notes": "DocumentReference", "vitals": "Observation"}
SUMMARY_MAX = 140  # CDS Hooks: "<140-character summary"
INDICATOR_ORDER = ("critical", "warning", "info")
URGENCY_INDICATOR = {"emergency": "critical", "urgent": "warning", "soon": "info", "routine": "info"}
NOT_FETCHED = ("healthmon reads only what the EHR prefetched (patient, notes, vital signs); it never "
               "queries the FHIR server.")
SOURCE_LABEL = "healthmon"
EXTENSION = "healthmon"  # the key of each card's machine-readable values (CDS Hooks `extension`)


def discovery() -> dict[str, Any]:
    """The CDS Hooks discovery document: one ``patient-view`` service."""
    return {"services": [{
        "hook": HOOK, "id": SERVICE_ID, "title": "healthmon calibrated risk, NEWS2 and advice",
        "description": "Scores the patient's recent notes with healthmon's served model (calibrated probability "
                       "per label, with the words behind the top risk), scores NEWS2 and blood pressure from the "
                       "recent vital signs, and lists the advice rules they fire. Reads the prefetched resources "
                       "only.",
        "prefetch": dict(PREFETCH),
    }]}


# ------------------------------------------------------------------------------- the request


class HookContext(BaseModel):
    """``patient-view`` context (CDS Hooks patient-view 1.0)."""

    model_config = ConfigDict(extra="forbid")

    userId: str = Field(min_length=1, max_length=200, description="Who opened the chart, e.g. Practitioner/123.")
    patientId: str = Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$", description="The FHIR id of the patient.")
    encounterId: str | None = Field(None, max_length=200)


class HookPrefetch(BaseModel):
    """The prefetch keys of the discovery document; each a FHIR resource or a searchset Bundle, or absent."""

    model_config = ConfigDict(extra="forbid")

    patient: dict[str, Any] | None = None
    notes: dict[str, Any] | None = None
    vitals: dict[str, Any] | None = None


class HookRequest(BaseModel):
    """A CDS Hooks 2.0 request to ``healthmon-risk``. ``fhirServer`` and ``fhirAuthorization`` are
    accepted and never used: nothing is fetched."""

    model_config = ConfigDict(extra="forbid")

    hook: Literal["patient-view"]
    hookInstance: str = Field(min_length=1, max_length=200)
    fhirServer: str | None = Field(None, max_length=2000)
    fhirAuthorization: dict[str, Any] | None = None
    context: HookContext
    prefetch: HookPrefetch = Field(default_factory=HookPrefetch)
    extension: dict[str, Any] | None = None


# ------------------------------------------------------------------------------- the prefetch


@dataclass(frozen=True)
class PrefetchData:
    """What the prefetch held for the hook's patient.

    Attributes:
        notes: readable text notes, newest first, as this patient's (``source`` ``cds-hooks``).
        not_read: why each document or resource was not read (a URL-only attachment, a PDF, another
            patient's resource, one over the per-request note limit ...).
        vitals: the long vitals table (:data:`healthmon.vitals.parameters.COLUMNS`) of this patient.
        given: the prefetch keys the EHR sent.
    """

    patient_id: str
    notes: tuple[Note, ...] = ()
    not_read: tuple[str, ...] = ()
    vitals: pd.DataFrame = field(default_factory=pd.DataFrame)
    birth_date: date | None = None
    sex: str | None = None
    given: frozenset[str] = frozenset()

    @property
    def has_vitals(self) -> bool:
        return bool(len(self.vitals)) and bool((self.vitals["parameter"].isin(list(UNITS))).any())


def _entries(key: str, value: Mapping[str, Any]) -> tuple[list[dict], list[str]]:
    """The resources of one prefetch key of the expected type, and why the others were left out."""
    kind = value.get("resourceType")
    if not isinstance(kind, str):
        raise IngestError(f"prefetch.{key} as a FHIR resource or Bundle", "a JSON object without resourceType",
                          f"send the result of {PREFETCH[key]!r} (or leave the key out)")
    found = ([e.get("resource") if isinstance(e, dict) else None for e in value.get("entry") or []]
             if kind == "Bundle" else [value])
    wanted, left = [], []
    for resource in found:
        if not isinstance(resource, dict):
            left.append(f"prefetch.{key}: an entry without a resource")
        elif resource.get("resourceType") == PREFETCH_TYPES[key]:
            wanted.append(resource)
        elif resource.get("resourceType") != "OperationOutcome":  # a searchset's own warnings: not data
            left.append(f"prefetch.{key}: a {resource.get('resourceType')!s:.40} (expected {PREFETCH_TYPES[key]})")
    return wanted, left


def _patient(raw: dict, patient_id: str) -> tuple[date | None, str | None]:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        patient = get_fhir_model_class("Patient").model_validate(raw)
    except ValidationError as exc:
        shown = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise IngestError("prefetch.patient as a valid FHIR Patient", shown, "send the Patient resource as read") from exc
    if patient.id and patient.id != patient_id:
        raise IngestError(f"prefetch.patient for context.patientId {patient_id!r}", f"Patient/{patient.id}",
                          "prefetch the patient of the hook's context")
    sex = patient.gender if patient.gender in ("female", "male") else None
    return patient.birthDate, sex


def read_prefetch(prefetch: HookPrefetch | Mapping[str, Any], patient_id: str, *, max_notes: int) -> PrefetchData:
    """This patient's notes, vitals, birth date and sex from the prefetch (a missing key is no data).

    Resources of another patient or type are left out and said; a note attachment that is not
    inline ``text/plain`` (a URL, a PDF) is not read and said.

    Raises:
        IngestError: a prefetch value that is not a FHIR resource or Bundle, or a Patient that is not
            the hook's patient.
    """
    values = prefetch.model_dump() if isinstance(prefetch, HookPrefetch) else dict(prefetch)
    given = frozenset(k for k, v in values.items() if v is not None)
    resources: list[dict] = []
    not_read: list[str] = []
    born = sex = None
    for key in ("patient", "notes", "vitals"):
        if values.get(key) is None:
            continue
        wanted, left = _entries(key, values[key])
        not_read += left
        if key == "patient":
            for raw in wanted[:1]:
                born, sex = _patient(raw, patient_id)
        else:
            resources += wanted
    if not resources:
        return PrefetchData(patient_id, not_read=tuple(not_read), vitals=_empty_vitals(), birth_date=born, sex=sex,
                            given=given)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    data = read_fhir(json.dumps(bundle), "prefetch")
    not_read += [f"{where}: {why}" for where, why in data.report.rejected + data.report.attachments_rejected]
    frame = data.frame
    mine = frame["patient_id"].astype(str) == patient_id
    if (~mine).any():
        not_read.append(f"{int((~mine).sum())} vital-sign value(s) of another patient")
    notes, others = [], 0
    for note in data.notes.notes:
        if note.patient_id not in (None, patient_id):
            others += 1
            continue
        notes.append(Note(text=note.text, note_id=note.note_id, patient_id=patient_id, source="cds-hooks"))
    if others:
        not_read.append(f"{others} note(s) of another patient")
    oldest = pd.Timestamp.min.tz_localize("UTC")
    notes.sort(key=lambda n: data.note_dates.get(n.note_id) or oldest, reverse=True)  # stable: ties keep order
    if len(notes) > max_notes:
        not_read.append(f"{len(notes) - max_notes} older note(s) over the limit of {max_notes} notes per request")
        notes = notes[:max_notes]
    return PrefetchData(patient_id, tuple(notes), tuple(not_read), frame[mine].reset_index(drop=True), born, sex,
                        given)


def _empty_vitals() -> pd.DataFrame:
    from healthmon.vitals.parameters import COLUMNS

    return pd.DataFrame(columns=COLUMNS)


def assess_vitals(data: PrefetchData, *, spo2_scale: int = 1) -> VitalsAssessment | None:
    """NEWS2, blood pressure and alerts of the prefetched vital signs (None without any), set as the CLI sets them."""
    if not data.has_vitals:
        return None
    setting = readings_setting(data.vitals, data.patient_id)
    return assess_patient(data.vitals, data.patient_id, setting=setting, spo2_scale=spo2_scale)


# ---------------------------------------------------------------------------------- the scores


@dataclass(frozen=True)
class NoteScore:
    """One prefetched note, its prediction, and its stored case (None when it was not stored)
    with the case's opaque link id (:mod:`healthmon.services.links`)."""

    note: Note
    prediction: Prediction
    case_id: int | None = None
    case_ref: str | None = None

    def risk_source(self) -> str:
        where = f"case #{self.case_id}" if self.case_id is not None else f"note {self.note.note_id}"
        return f"{where}, model {self.prediction.model_version}"


#: Labels that say a note shows no condition (the demo model's "none"): a finding, never a risk card.
NO_FINDING_LABELS = frozenset({"none", "normal", "no finding", "no_finding", "negative", "healthy"})


def is_risk_label(label: str) -> bool:
    return label.strip().lower() not in NO_FINDING_LABELS


def carded_labels(scores: Sequence[NoteScore], thresholds: Mapping[str, float]) -> list[tuple[str, NoteScore]]:
    """(label, the note scoring it highest) for each label that gets a card, highest first.

    Multi-label: every label whose highest probability over the notes is at or above its
    threshold. Single-label and regression: the top label of the highest-scoring note whose top
    label is a condition. A no-finding label (:data:`NO_FINDING_LABELS`) never gets a risk card:
    "none 0.93" is reassurance, and shown as a red card it would lead the EHR's list.
    """
    if not scores:
        return []
    if scores[0].prediction.problem_type != "multi_label_classification":
        candidates = [s for s in scores if is_risk_label(s.prediction.top_label)]
        if not candidates:
            return []
        best = max(candidates, key=lambda s: s.prediction.probabilities[s.prediction.top_label])
        return [(best.prediction.top_label, best)]
    carded = []
    for label in scores[0].prediction.probabilities:
        if not is_risk_label(label):
            continue
        best = max(scores, key=lambda s: s.prediction.probabilities[label])
        if best.prediction.probabilities[label] >= thresholds.get(label, 0.5):
            carded.append((label, best))
    return sorted(carded, key=lambda pair: -pair[1].prediction.probabilities[pair[0]])


def findings(data: PrefetchData, scores: Sequence[NoteScore], assessment: VitalsAssessment | None, *,
             today: date | None = None) -> PatientFindings:
    """The advice engine's facts, as :func:`healthmon.services.patients.patient_snapshot` builds them,
    from the prefetch instead of the database: risk is the highest probability per label over the notes."""
    risk: dict[str, float] = {}
    risk_source: dict[str, str] = {}
    for score in scores:
        if score.prediction.problem_type == "regression":
            continue  # a predicted value, not a probability
        for label, probability in score.prediction.probabilities.items():
            if probability > risk.get(label, -1.0):
                risk[label], risk_source[label] = float(probability), score.risk_source()
    today = today or datetime.now(UTC).date()
    age = age_on(data.birth_date, today) if data.birth_date is not None else None
    return PatientFindings(patient_id=data.patient_id, risk=risk, risk_source=risk_source, age=age, sex=data.sex,
                           setting=None if assessment is None else readings_setting(data.vitals, data.patient_id),
                           **vitals_facts(assessment))


def fired_advice(rules: tuple[Rule, ...], facts: PatientFindings, data: PrefetchData) -> AdviceResult:
    """The rules that fire; a rule firing on *missing* vitals is dropped when no vitals were prefetched
    (absent from the prefetch is not absent from the record)."""
    result = evaluate(rules, facts)
    if "vitals" in data.given:
        return result
    kept = tuple(a for a in result.advice if not any(m.startswith(("bp.", "news2.")) for m in a.rule.missing))
    return AdviceResult(kept, result.unknown)


# ----------------------------------------------------------------------------------- the cards


@dataclass(frozen=True)
class Card:
    """One CDS Hooks card (``uuid``, ``summary``, ``indicator``, ``detail``, ``source``, ``links``, ``extension``)."""

    summary: str
    indicator: str
    detail: str
    source_url: str
    links: tuple[tuple[str, str], ...] = ()  # (label, absolute url)
    extension: dict[str, Any] = field(default_factory=dict)
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        if self.indicator not in INDICATOR_ORDER:
            raise IngestError(f"a card indicator among {', '.join(INDICATOR_ORDER)}", repr(self.indicator),
                              "use info, warning or critical")
        if len(self.summary) > SUMMARY_MAX:
            object.__setattr__(self, "summary", self.summary[:SUMMARY_MAX - 1] + "…")

    def to_dict(self) -> dict[str, Any]:
        card: dict[str, Any] = {"uuid": self.uuid, "summary": self.summary, "indicator": self.indicator,
                                "detail": self.detail, "source": {"label": SOURCE_LABEL, "url": self.source_url}}
        if self.links:
            card["links"] = [{"label": label, "url": url, "type": "absolute"} for label, url in self.links]
        if self.extension:
            card["extension"] = {EXTENSION: dict(self.extension)}
        return card

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Card:
        """A card :meth:`to_dict` wrote; an unknown key raises IngestError."""
        unknown = sorted(set(data) - {"uuid", "summary", "indicator", "detail", "source", "links", "extension"})
        if unknown:
            raise IngestError("a CDS Hooks card as healthmon writes it", f"unknown key(s) {', '.join(unknown)}",
                              "drop them (suggestions and selectionBehavior are not used)")
        return cls(summary=data["summary"], indicator=data["indicator"], detail=data.get("detail", ""),
                   source_url=(data.get("source") or {}).get("url", ""), uuid=data["uuid"],
                   links=tuple((link["label"], link["url"]) for link in data.get("links") or ()),
                   extension=dict((data.get("extension") or {}).get(EXTENSION, {})))


def _risk_indicator(p: float) -> str:
    return "critical" if p >= 0.8 else "warning" if p >= 0.5 else "info"


def _news2_indicator(total: int | None, red_flag: bool, crisis: bool) -> str:
    if total is not None and total >= 7:
        return "critical"
    return "warning" if (total is not None and total >= 5) or red_flag or crisis else "info"


def _not_read_lines(not_read: Sequence[str]) -> str:
    if not not_read:
        return ""
    shown = "\n".join(f"- {escape_markdown(why)}" for why in not_read[:5])
    more = f"\n- and {len(not_read) - 5} more" if len(not_read) > 5 else ""
    return f"\n\nNot read ({len(not_read)}):\n{shown}{more}"


def case_link(base_url: str, case_ref: str | None) -> tuple[tuple[str, str], ...]:
    return () if case_ref is None else (("Open the case in healthmon", f"{base_url}/Case?case={case_ref}"),)


def risk_cards(scores: Sequence[NoteScore], thresholds: Mapping[str, float], words: Sequence[str],
               base_url: str, not_read: Sequence[str] = ()) -> list[Card]:
    """One card per carded label (:func:`carded_labels`); the first gets ``words`` (the top risk's)."""
    carded = carded_labels(scores, thresholds)
    if scores and not carded:
        top = max((p for s in scores for label, p in s.prediction.probabilities.items() if is_risk_label(label)),
                  default=0.0)
        return [Card(f"No risk at or above its threshold in {len(scores)} note(s) (highest {top:.2f})", "info",
                     f"Every label's calibrated probability is below its threshold, model "
                     f"{escape_markdown(scores[0].prediction.model_version)}." + _not_read_lines(not_read), base_url)]
    cards = []
    for n, (label, best) in enumerate(carded):
        p, prediction = best.prediction.probabilities[label], best.prediction
        regression = prediction.problem_type == "regression"
        summary = (f"{label} predicted {p:.3g} (highest of {len(scores)} notes)" if regression
                   else f"{label} risk {p:.2f} (calibrated)")
        what = "predicted value" if regression else "calibrated probability"
        threshold = f" (threshold {thresholds[label]:.2f})" if label in thresholds else ""
        lines = [f"**{escape_markdown(label)}**: {what} {p:.3f}{threshold}, the highest of {len(scores)} scored "
                 f"note(s): note {escape_markdown(best.note.note_id)}"
                 + (f", case \\#{best.case_id}" if best.case_id is not None else "") + "."]
        if n == 0:
            shown = ", ".join(f"\"{escape_markdown(w)}\"" for w in words)
            lines.append(f"Words behind it (integrated gradients): {shown}." if words
                         else "No word pushed this score up.")
        lines.append(f"Model version {escape_markdown(prediction.model_version)}. Decision support for a clinician, "
                     "not a diagnosis.")
        detail = "\n\n".join(lines) + (_not_read_lines(not_read) if n == 0 else "")
        cards.append(Card(summary, "info" if regression else _risk_indicator(p), detail, base_url,
                          case_link(base_url, best.case_ref),
                          {"kind": "risk", "label": label, "probability": p, "note_id": best.note.note_id,
                           "case": best.case_id, "model_version": prediction.model_version,
                           # escaped as in the detail: an EHR may show these as markdown too
                           "words": [escape_markdown(w) for w in words] if n == 0 else []}))
    return cards


def vitals_card(assessment: VitalsAssessment, base_url: str) -> Card | None:
    """NEWS2 and blood pressure of the prefetched vital signs, or None when neither could be scored."""
    latest, bp = assessment.latest_news2, assessment.bp
    if latest is None and bp is None:
        return None
    parts, lines, extension = [], [], {"kind": "vitals"}
    total = red_flag = None
    if latest is not None:
        total, red_flag = int(latest["total"]), bool(latest["red_flag"])
        partial = "" if latest["complete"] else ", partial"
        parts.append(f"NEWS2 {total} ({latest['band']}{partial})")
        lines.append(f"**NEWS2 {total}** ({escape_markdown(str(latest['band']))}{partial}), scored "
                     f"{latest['time']:%Y-%m-%d %H:%M} UTC on SpO2 {assessment.spo2_scale_words}"
                     + ("; 3 points in a single parameter" if red_flag else "") + ".")
        if latest.get("caveat"):
            lines.append(escape_markdown(str(latest["caveat"])))
        extension.update(news2_total=total, news2_band=str(latest["band"]), news2_complete=bool(latest["complete"]),
                         news2_time=latest["time"].isoformat(), spo2_scale=assessment.spo2_scale)
    if bp is not None:
        shown = f"BP {bp.systolic:.0f}/{bp.diastolic:.0f} mmHg" + ("" if bp.cuffless else f" {bp.category}")
        parts.append(shown)
        lines.append(f"**{escape_markdown(shown)}** ({escape_markdown(bp.guideline)}): "
                     f"{escape_markdown(assessment.bp_note)}."
                     + (f" {escape_markdown(bp.caveat)}" if bp.caveat else ""))
        if assessment.bp_crisis:
            lines.append("Above 180/120: " + escape_markdown(", ".join(assessment.bp_crisis)))
        extension.update(bp_category=bp.category, bp_systolic=float(bp.systolic), bp_diastolic=float(bp.diastolic))
    recent = assessment.alerts.tail(5).to_dict("records") if len(assessment.alerts) else []
    if recent:
        lines.append("Alerts:\n" + "\n".join(f"- {escape_markdown(str(a['message']))}" for a in recent))
    indicator = _news2_indicator(total, bool(red_flag), bool(assessment.bp_crisis) or bool(bp and bp.crisis))
    return Card(" · ".join(parts), indicator, "\n\n".join(lines), base_url, (), extension)


def advice_cards(result: AdviceResult, base_url: str) -> list[Card]:
    """One card per fired advice rule: its title, its advice, what fired it and the guideline it cites."""
    cards = []
    for advice in result.advice:
        rule = advice.rule
        why = "\n".join(f"- {escape_markdown(t['text'])}" for t in advice.trigger_dicts())
        detail = (f"{escape_markdown(rule.advice)}\n\nFollow-up: {rule.follow_up}.\n\nFired by:\n{why}\n\n"
                  f"Source: {escape_markdown(rule.source)}\n\nA draft for a clinician to approve, not an order.")
        cards.append(Card(rule.title, URGENCY_INDICATOR.get(rule.urgency, "info"), detail, base_url, (),
                          {"kind": "advice", "rule": rule.id, "urgency": rule.urgency}))
    return cards


def nothing_card(data: PrefetchData, base_url: str, why: str = "") -> Card:
    """The one card when no note and no vital sign could be scored."""
    given = ", ".join(sorted(data.given)) or "no prefetch"
    detail = (f"No readable note and no vital sign in the prefetch ({escape_markdown(given)}). "
              + (escape_markdown(why) + " " if why else "") + NOT_FETCHED + _not_read_lines(data.not_read))
    return Card("healthmon: nothing could be scored for this patient", "info", detail, base_url, (),
                {"kind": "nothing"})


def sort_cards(cards: Sequence[Card]) -> list[Card]:
    """Most severe first; the order within an indicator is kept."""
    return sorted(cards, key=lambda c: INDICATOR_ORDER.index(c.indicator))


def compose_cards(data: PrefetchData, scores: Sequence[NoteScore], thresholds: Mapping[str, float],
                  words: Sequence[str], assessment: VitalsAssessment | None, advice: AdviceResult | None,
                  base_url: str, *, model_problem: HealthmonError | None = None) -> list[Card]:
    """Every card for one hook call, most severe first.

    ``model_problem``: why the notes could not be scored (no served model), said on an info card.
    """
    cards = risk_cards(scores, thresholds, words, base_url, data.not_read)
    if model_problem is not None and data.notes:
        cards.append(Card(f"healthmon could not score {len(data.notes)} note(s)", "info",
                          escape_markdown(f"Expected {model_problem.expected}; found {model_problem.found}. "
                                          f"Fix: {model_problem.fix}"), base_url, (), {"kind": "not-scored"}))
    card = vitals_card(assessment, base_url) if assessment is not None else None
    if card is not None:
        cards.append(card)
    if advice is not None:
        cards += advice_cards(advice, base_url)
    if not scores and card is None and model_problem is None:
        return [nothing_card(data, base_url)]
    return sort_cards(cards)


def top_words(words: Sequence[Any], n: int = 5) -> list[str]:
    """The ``n`` distinct words (case-insensitive) with the largest positive attribution, largest first."""
    seen: set[str] = set()
    out: list[str] = []
    for w in sorted(words, key=lambda w: -w.score):
        text = w.word.strip()
        if w.score <= 0 or len(out) >= n:
            break
        if any(ch.isalnum() for ch in text) and text.lower() not in seen:  # not a lone "(" or ","
            seen.add(text.lower())
            out.append(text)
    return out
