"""FHIR R4 Bundles and bulk NDJSON as healthmon's vitals table, conditions and notes.

Every resource is parsed and validated by ``fhir.resources`` (its ``R4B`` package: R4B is
R4 with changes limited to the medication-regulation, evidence and subscription
resources, so Observation, Condition, DocumentReference, Patient and Bundle read the same).
A resource the library refuses is rejected with the library's message and its location
(``<file> line N`` for NDJSON, ``<file> entry N`` for a Bundle, both 1-based); a file with
no readable FHIR resource at all raises :class:`~healthmon.errors.IngestError`.

* **Vitals.** Observations are mapped by LOINC code (:data:`VITAL_CODES`) to the
  parameters and units of :mod:`healthmon.vitals.ingest`; blood-pressure panels
  (:data:`BP_PANELS`) give their systolic and diastolic components, and a panel missing one
  is a missing parameter (a report warning), not an error. Units are converted through
  :data:`UNIT_CONVERSIONS` and reported; a unit that cannot be converted is flagged and
  its value left empty, as in the CSV reader. Values outside ``PLAUSIBLE`` are kept with
  ``artefact=True`` and are never scored.
* **Consciousness.** An ACVPU Observation (SNOMED CT :data:`ACVPU_CODE`, the UK Core NEWS2
  profile) is read from its coded answer (:data:`ACVPU_ANSWERS`), or its text where the code is
  another; an answer naming no level is flagged, like any implausible value.
* **Labs and everything else numeric** (HbA1c 4548-4, cholesterol, body height, BMI ...)
  are kept as given under ``lab:<LOINC display>`` (the code's text, or the code itself,
  when there is no display), like the PhysioNet reader's ``lab:NAME``, so nothing
  numeric read is lost; ``report.lab_codes`` says which code each name came from.
  Observations without a number (smoking status as a code, free text, a
  ``dataAbsentReason``) are counted in ``report.observations_not_numeric``.
* **Conditions** become a table (:data:`CONDITION_COLUMNS`); :func:`condition_label` maps a
  display to a healthmon label through the rule table :data:`CONDITION_LABELS`.
* **DocumentReference** ``text/plain`` attachments become :class:`~healthmon.types.Note`
  values in an :class:`~healthmon.types.IngestResult`, as the notes ingest returns them;
  ``Note.line`` is the NDJSON line or Bundle entry number and the note id is the
  resource id. Other content types, undecodable text and invalid base64 are listed in
  that result's report; note dates are in ``FhirData.note_dates``.
* **Patients** are counted as people: records joined by ``Patient.link`` count once, a
  repeated ``Patient`` id is a duplicate (rejected, like any repeated resource id).
  Records sharing birth date, gender and city are reported as a warning but not merged:
  Synthea re-generates a patient who died with the same birth date, gender and town,
  giving different people with different records.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from healthmon.errors import IngestError
from healthmon.types import IngestReport, IngestResult, Note, RejectedRow
from healthmon.vitals.ingest import COLUMNS, LB_TO_KG, MMOL_TO_MG_DL, UNITS, acvpu_letter, implausible

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
CONDITION_COLUMNS = ["patient_id", "code", "display", "onset", "clinical_status"]

# LOINC code -> healthmon parameter (canonical unit in ingest.UNITS).
VITAL_CODES = {
    "8867-4": "heart_rate",
    "8889-8": "heart_rate",  # by pulse oximetry (a wearable's or a finger probe's)
    "9279-1": "respiration_rate",
    "59408-5": "spo2",  # by pulse oximetry
    "2708-6": "spo2",  # arterial; the same parameter, as in the PhysioNet reader
    "8310-5": "temperature",
    # The same temperature taken at a named site; NEWS2 does not distinguish them.
    "8331-1": "temperature",  # oral
    "8328-7": "temperature",  # axillary
    "8333-7": "temperature",  # tympanic membrane
    "8332-9": "temperature",  # rectal
    "8480-6": "systolic_bp",
    "8462-4": "diastolic_bp",
    "29463-7": "weight",
    "2339-0": "glucose",  # blood
    "2345-7": "glucose",  # serum or plasma
    "41950-7": "steps",  # per 24 h
    "55423-8": "steps",  # step count
}
# Supplemental oxygen, the NEWS2 "air or oxygen" row: US Core's pulse-oximetry Observation carries
# these as components. Oxygen is given where the inspired concentration is above room air (21 %)
# or a flow is running. (LOINC code -> (units accepted, lower-cased; above this means oxygen)).
OXYGEN_CODES = {"3150-0": ({"%"}, 21.0), "3151-8": ({"l/min", "l/min{o2}", "litre/min", "liter/min"}, 0.0)}
OXYGEN_NAMES = {"3150-0": "Inhaled oxygen concentration", "3151-8": "Inhaled oxygen flow rate"}
# NEWS2's level of consciousness as UK Core / CareConnect send it: an Observation coded SNOMED CT
# 1104441000000107 (ACVPU scale score) whose valueCodeableConcept is one of the ACVPU value set's
# SNOMED answers. An answer outside the set is read from its text where that names a level
# ("Voice", "new confusion"), else flagged; never guessed from a first letter.
ACVPU_CODE = "1104441000000107"
ACVPU_ANSWERS = {"248234008": "A", "130987000": "C", "300202002": "V", "450847001": "P", "422768004": "U"}
BP_PANELS = {"85354-9", "55284-4"}
BP_COMPONENTS = {"8480-6": "systolic", "8462-4": "diastolic"}

_SAME = (1.0, 0.0)
# parameter -> unit as written (UCUM code, else the unit text; lower-cased) -> (scale, offset):
# canonical value = value * scale + offset. A unit not listed here is flagged, not guessed.
UNIT_CONVERSIONS: dict[str, dict[str, tuple[float, float]]] = {
    "heart_rate": {"/min": _SAME, "{beats}/min": _SAME, "beats/min": _SAME, "bpm": _SAME},
    "respiration_rate": {"/min": _SAME, "{breaths}/min": _SAME, "breaths/min": _SAME},
    "spo2": {"%": _SAME},
    "temperature": {"cel": _SAME, "°c": _SAME, "degc": _SAME, "[degf]": (5 / 9, -160 / 9), "°f": (5 / 9, -160 / 9),
                    "degf": (5 / 9, -160 / 9)},
    "systolic_bp": {"mm[hg]": _SAME, "mmhg": _SAME},
    "diastolic_bp": {"mm[hg]": _SAME, "mmhg": _SAME},
    "weight": {"kg": _SAME, "[lb_av]": (LB_TO_KG, 0.0), "lb": (LB_TO_KG, 0.0), "lbs": (LB_TO_KG, 0.0),
               "g": (0.001, 0.0)},
    "glucose": {"mg/dl": _SAME, "mmol/l": (MMOL_TO_MG_DL, 0.0)},
    # A step count is a count: devices write it with no unit as often as with one.
    "steps": {"": _SAME, "{steps}": _SAME, "steps": _SAME, "{steps}/d": _SAME, "/d": _SAME, "/(24.h)": _SAME,
              "{count}": _SAME},
}
# Statuses that mean "this is not a measurement" (FHIR R4 ObservationStatus).
NOT_MEASURED = {"cancelled", "entered-in-error"}
NOT_A_CONDITION = {"refuted", "entered-in-error"}  # Condition.verificationStatus: not listed as on record
# Short names for the code systems a Condition may carry instead of SNOMED CT.
CODE_SYSTEMS = {"http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM", "http://hl7.org/fhir/sid/icd-10": "ICD-10",
                "http://hl7.org/fhir/sid/icd-9-cm": "ICD-9-CM"}
BUNDLE_TYPES = {"document", "message", "transaction", "transaction-response", "batch", "batch-response", "history",
                "searchset", "collection"}

# Condition display (case-insensitive regex) -> healthmon label; the first rule that matches
# wins and None means "no label", so the exclusions come before the rules they refine.
# Prediabetes keeps its own label: it is a risk state, not diabetes.
CONDITION_LABELS: tuple[tuple[str, str | None], ...] = (
    (r"\bsuspected\b|\bbenign\b", None),
    (r"\bpre-?diabet", "prediabetes"),
    (r"\bdiabetes insipidus\b", None),  # a pituitary/kidney disorder, not diabetes mellitus
    (r"\bdiabet", "diabetes"),  # incl. "Diabetes mellitus type 2" and its complications
    (r"\b(pulmonary|ocular|portal|intracranial) hypertension\b", None),
    (r"\bhypertensi", "hypertension"),
    (r"\bcancer\b|\bneoplasm\b|\bcarcinoma\b|\bmalignan|\blymphoma\b|\bleuk(a)?emia\b|\bmelanoma\b|\bsarcoma\b",
     "cancer"),
)

_EXPECTED = "a FHIR R4 Bundle (JSON) or bulk NDJSON (one resource per line)"
_FIX = "export the data again as a FHIR JSON Bundle or as bulk-data NDJSON"
_PATIENT_REFERENCE = re.compile(r"(?:^|/)Patient/([^/]+)")


@dataclass(frozen=True)
class _Where:
    """Where a resource was read: ``<source> line N`` (NDJSON) or ``<source> entry N`` (Bundle)."""

    source: str
    kind: str
    number: int

    def __str__(self) -> str:
        return f"{self.source} {self.kind} {self.number}"


@dataclass
class FhirReport:
    source: str
    resources_read: dict[str, int] = field(default_factory=dict)  # resourceType -> count, rejected ones included
    resources_rejected: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    # DocumentReference attachments that are not text (a PDF, a URL only): the resource was read,
    # the note was not. (where, why)
    attachments_rejected: list[tuple[str, str]] = field(default_factory=list)
    observations_mapped: dict[str, int] = field(default_factory=dict)  # LOINC (or ACVPU SNOMED) code -> count
    observations_unmapped: dict[str, int] = field(default_factory=dict)  # kept under lab:
    observations_not_numeric: dict[str, int] = field(default_factory=dict)
    values_read: int = 0
    values_flagged: int = 0
    flagged: list[tuple[str, str, str]] = field(default_factory=list)  # (where, parameter, why)
    conversions: list[str] = field(default_factory=list)
    lab_codes: dict[str, str] = field(default_factory=dict)  # lab:NAME -> LOINC code
    conditions: int = 0
    patient_records: int = 0  # distinct Patient ids
    patients: int = 0  # people: records joined by Patient.link count once
    linked_patients: list[tuple[str, str, str]] = field(default_factory=list)  # (id, link type, other id)
    duplicates: list[str] = field(default_factory=list)  # "Type/id" read more than once
    warnings: list[str] = field(default_factory=list)


@dataclass
class FhirData:
    frame: pd.DataFrame  # ingest.COLUMNS
    conditions: pd.DataFrame  # CONDITION_COLUMNS
    notes: IngestResult
    note_dates: dict[str, pd.Timestamp | None]
    report: FhirReport


def read_fhir(data: bytes | str | Path, name: str | None = None) -> FhirData:
    """Read one FHIR Bundle or NDJSON file; see the module docstring.

    Args:
        data: the file's bytes or text, or a :class:`~pathlib.Path` to read.
        name: shown in the report and the ``source`` column; default the path's name.

    Raises:
        IngestError: the file is missing, empty, not UTF-8, or holds no FHIR resource.
    """
    text, name = _load(data, name)
    reader = _Reader()
    reader.read(text, name)
    return reader.finish(name)


def read_fhir_files(paths: Iterable[str | Path]) -> FhirData:
    """Several files (a bulk export's ``<Type>.NNN.ndjson``, or Bundles) read as one.

    Patients in one file and their Conditions in another are counted together, and a
    resource repeated across files is a duplicate. Any unreadable file raises.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise IngestError("at least one FHIR file", "no files", "pass the Bundle or NDJSON files to read")
    reader = _Reader()
    for path in paths:
        reader.read(*_load(path, None))
    return reader.finish(", ".join(p.name for p in paths))


def read_fhir_bytes(files: dict[str, bytes]) -> FhirData:
    """Several files given as {name: contents} (an upload form) read as one, like :func:`read_fhir_files`."""
    if not files:
        raise IngestError("at least one FHIR file", "no files", "pass the Bundle or NDJSON files to read")
    reader = _Reader()
    for name, data in files.items():
        reader.read(*_load(data, name))
    return reader.finish(", ".join(files))


def condition_label(display: str | None) -> str | None:
    """The healthmon label for a Condition display (:data:`CONDITION_LABELS`), or None."""
    for pattern, label in CONDITION_LABELS:
        if display and re.search(pattern, display, re.IGNORECASE):
            return label
    return None


# ----------------------------------------------------------------------------- reading files


def _load(data: bytes | str | Path, name: str | None) -> tuple[str, str]:
    if isinstance(data, Path):
        if not data.is_file():
            raise IngestError("an existing FHIR file", f"no file at {str(data)!r}", "check the path")
        return _decode(data.read_bytes(), name or data.name), name or data.name
    name = name or "fhir.json"
    return (_decode(data, name) if isinstance(data, bytes) else data), name


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError("UTF-8 text (FHIR JSON is always UTF-8)", f"{name}: byte {exc.start} is not UTF-8",
                          _FIX) from exc


def _resources(text: str, name: str) -> tuple[list[tuple[_Where, Any]], list[tuple[_Where, str]]]:
    """(where, resource as JSON) for every resource found, and lines that are not resources."""
    if not text.strip():
        raise IngestError(_EXPECTED, f"{name}: an empty file", _FIX)
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        return _ndjson(text, name, exc)
    return _one_document(whole, name), []


def _one_document(document: Any, name: str) -> list[tuple[_Where, Any]]:
    kind = document.get("resourceType") if isinstance(document, dict) else None
    if kind == "Bundle":
        return _bundle_entries(document, name)
    if kind == "OperationOutcome":  # a server's error answer saved in place of the data
        issues = "; ".join(i.get("diagnostics") or str(i.get("details", {}).get("text", i.get("code")))
                           for i in document.get("issue", []) if isinstance(i, dict))
        raise IngestError(_EXPECTED, f"{name}: an OperationOutcome (the server reported: {issues or 'no details'})",
                          "fix the query or export that produced this file and export again")
    if isinstance(kind, str):
        return [(_Where(name, "line", 1), document)]  # one resource on its own
    found = (f"a JSON object without resourceType (keys {', '.join(list(document)[:5]) or 'none'})"
             if isinstance(document, dict) else f"a JSON {type(document).__name__}")
    raise IngestError(_EXPECTED, f"{name}: {found}", _FIX)


def _bundle_entries(bundle: dict, name: str) -> list[tuple[_Where, Any]]:
    shell = {key: value for key, value in bundle.items() if key != "entry"}
    try:
        get_fhir_model_class("Bundle").model_validate(shell)
    except ValidationError as exc:
        raise IngestError("a valid FHIR Bundle", f"{name}: {_library_message(exc)}", _FIX) from exc
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise IngestError("Bundle.entry as a list", f"{name}: entry is a {type(entries).__name__}", _FIX)
    return [(_Where(name, "entry", number), entry.get("resource") if isinstance(entry, dict) else None)
            for number, entry in enumerate(entries, start=1)]


def _ndjson(text: str, name: str, whole: json.JSONDecodeError) -> tuple[list, list]:
    resources, bad = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = _Where(name, "line", number)
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append((where, f"not JSON ({exc.msg} at column {exc.colno})"))
            continue
        if isinstance(item, dict) and isinstance(item.get("resourceType"), str):
            resources.append((where, item))
        else:
            bad.append((where, "not a FHIR resource (no resourceType)"))
    if not resources:
        shown = "; ".join(f"{where.kind} {where.number}: {why}" for where, why in bad[:3])
        hint = ""
        # A pretty-printed Bundle with one broken character lands here too: say where it breaks.
        if text.lstrip().startswith("{") and all(why.startswith("not JSON") for _, why in bad):
            hint = f"; read as one JSON document it breaks at line {whole.lineno} column {whole.colno}: {whole.msg}"
        raise IngestError(_EXPECTED, f"{name}: no line is a FHIR resource ({shown}){hint}", _FIX)
    return resources, bad


def _library_message(exc: ValidationError) -> str:
    """The library's validation errors, one per field, without pydantic's help links."""
    errors = exc.errors()
    shown = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or exc.title}: {e['msg']}" for e in errors[:3])
    return shown + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")


# ---------------------------------------------------------------------- reading resources


class _Reader:
    """Accumulates what one or several files hold; :meth:`finish` turns it into FhirData."""

    def __init__(self) -> None:
        self.report = FhirReport(source="")
        self.rows: list[tuple] = []
        self.conditions: list[tuple] = []
        self.conditions_left_out: Counter[str] = Counter()  # verificationStatus refuted / entered-in-error
        self.notes: list[Note] = []
        self.note_rejected: list[RejectedRow] = []
        self.note_dates: dict[str, pd.Timestamp | None] = {}
        self.seen: dict[str, _Where] = {}
        self.patients: dict[str, Any] = {}
        self.types: Counter[str] = Counter()
        self.mapped: Counter[str] = Counter()
        self.unmapped: Counter[str] = Counter()
        self.not_numeric: Counter[str] = Counter()
        self.converted: Counter[tuple[str, str]] = Counter()
        self.lab_units: defaultdict[str, set[str]] = defaultdict(set)

    def read(self, text: str, name: str) -> None:
        resources, bad = _resources(text, name)
        for where, why in bad:
            self.reject(where, why)
        for where, raw in resources:
            self.add(raw, where)

    def reject(self, where: _Where, why: str, kind: str | None = None) -> None:
        self.report.rejected.append((str(where), why))
        if kind == "DocumentReference":  # the notes report lists every note that did not arrive
            self.note_rejected.append(RejectedRow(where.number, f"{where}: {why}"))

    def add(self, raw: Any, where: _Where) -> None:
        kind = raw.get("resourceType") if isinstance(raw, dict) else None
        if not isinstance(kind, str):
            self.reject(where, "no resource" if raw is None else "not a FHIR resource (no resourceType)")
            return
        self.types[kind] += 1
        try:
            resource = get_fhir_model_class(kind).model_validate(raw)
        except ValueError as exc:  # ValidationError, or an unknown resource type
            self.reject(where, _library_message(exc) if isinstance(exc, ValidationError) else str(exc), kind)
            return
        key = f"{kind}/{resource.id}"
        if resource.id and key in self.seen:
            self.report.duplicates.append(key)
            self.reject(where, f"duplicate {key} (first read at {self.seen[key]})", kind)
            return
        self.seen[key] = where
        handler = {"Observation": self.observation, "Condition": self.condition,
                   "DocumentReference": self.document, "Patient": self.patient}.get(kind)
        if handler is not None:
            handler(resource, where)

    # --- Observation

    def observation(self, obs: Any, where: _Where) -> None:
        period = obs.effectivePeriod.start if obs.effectivePeriod else None
        time = _utc(obs.effectiveDateTime or period or obs.effectiveInstant)
        patient = _patient_id(obs.subject)
        if obs.status in NOT_MEASURED:
            self.reject(where, f"Observation status {obs.status}: not a measurement")
        elif time is None:
            self.reject(where, "Observation without effectiveDateTime, effectivePeriod.start or effectiveInstant")
        elif patient is None:
            self.reject(where, "Observation without a subject reference to a Patient")
        else:
            self.readings(obs, patient, time, where)

    def readings(self, obs: Any, patient: str, time: pd.Timestamp, where: _Where) -> None:
        if _coding(obs.code, SNOMED)[0] == ACVPU_CODE:
            self.consciousness(obs, patient, time, where)
            return
        code, display = _coding(obs.code, LOINC)
        key = code or display or "(no code)"
        readings = list(_numbers(obs))
        if not readings:
            self.not_numeric[key] += 1
            return
        vitals, oxygen = 0, []
        for part_code, part_display, value, unit, bound in readings:
            if part_code in VITAL_CODES:
                vitals += 1
                self.vital(VITAL_CODES[part_code], value, unit, patient, time, where, bound=bound)
            elif part_code in OXYGEN_CODES:
                vitals += 1
                self.lab(part_code, part_display or OXYGEN_NAMES[part_code], value, unit, patient, time, where,
                         bound=bound)
                # A lower bound ("> 4 L/min") still proves oxygen is given; an upper one ("< 2") does not.
                if bound is None or bound.startswith(">"):
                    oxygen.append((part_code, value, unit))
            else:
                self.lab(part_code, part_display, value, unit, patient, time, where, bound=bound)
        if oxygen:
            self.oxygen(oxygen, patient, time, where)
        (self.mapped if vitals else self.unmapped)[key] += 1
        if code in BP_PANELS:
            present = {c for c, *_ in readings}
            for missing in sorted(set(BP_COMPONENTS) - present):
                self.report.warnings.append(f"{where}: blood-pressure panel {code} has no "
                                            f"{BP_COMPONENTS[missing]} component ({missing})")

    def vital(self, parameter: str, value: float, unit: str, patient: str, time: pd.Timestamp, where: _Where, *,
              bound: str | None = None) -> None:
        factors = UNIT_CONVERSIONS[parameter].get(unit.lower())
        problem = None
        if bound is not None:
            # ">600 mg/dL" is a meter's HI: scored as exactly 600 it would under-state the reading.
            problem = f"{_bound(bound, value, unit)}: not scored"
            value = float("nan")
        elif factors is None:
            problem = f"{value:g} {unit or '(no unit)'} cannot be converted to {UNITS[parameter]}"
            value = float("nan")
        elif factors != _SAME:
            value = round(value * factors[0] + factors[1], 2)
            self.converted[(parameter, unit)] += 1
        self.report.values_read += 1
        artefact = problem is not None or implausible(parameter, value)
        if artefact:
            self.report.values_flagged += 1
            self.report.flagged.append((str(where), parameter,
                                        problem or f"{value:g} {UNITS[parameter]} is implausible"))
        self.rows.append((patient, time, parameter, value, artefact, f"fhir:{where.source}"))

    def consciousness(self, obs: Any, patient: str, time: pd.Timestamp, where: _Where) -> None:
        """One ACVPU row (0 Alert ... 4 Unresponsive, as the CSV reader writes it)."""
        if obs.valueCodeableConcept is not None:
            answer, text = _coding(obs.valueCodeableConcept, SNOMED)
        elif obs.valueString is not None:
            answer, text = None, obs.valueString
        elif obs.dataAbsentReason is not None:
            self.not_numeric[ACVPU_CODE] += 1  # no level was assessed, and the Observation says so
            return
        else:  # a value of another type (a number, a boolean), or none without saying why
            answer, text = None, None
        letter = ACVPU_ANSWERS.get(answer or "") or acvpu_letter(text or "")
        self.mapped[ACVPU_CODE] += 1
        self.report.values_read += 1
        if letter:
            self.rows.append((patient, time, "consciousness", float("ACVPU".index(letter)), False, f"fhir:{where.source}"))
            return
        given = (f"ACVPU answer {answer or '(no SNOMED code)'} {text or ''!r}" if answer or text
                 else "an ACVPU Observation with neither a coded answer, a text answer nor a dataAbsentReason")
        self.report.values_flagged += 1
        self.report.flagged.append((str(where), "consciousness",
                                    f"{given} is not Alert, new Confusion, Voice, Pain or Unresponsive (SNOMED "
                                    "248234008, 130987000, 300202002, 450847001, 422768004)"))
        self.rows.append((patient, time, "consciousness", float("nan"), True, f"fhir:{where.source}"))

    def oxygen(self, parts: list[tuple[str, float, str]], patient: str, time: pd.Timestamp, where: _Where) -> None:
        """One "air or oxygen" row for an Observation, whatever its components say between them:
        oxygen where any of them shows it (a flow of 2 L/min beside 21 % is still oxygen). The
        numbers themselves are kept as labs by the caller; this row is derived from them."""
        judged, problems = [], []
        for code, value, unit in parts:
            units, room_air = OXYGEN_CODES[code]
            concentration = code == "3150-0"
            # A concentration under room air's 21 % is a fraction written as a percentage (0.4 "%").
            if unit.lower() not in units or value < 0 or (concentration and not 21 <= value <= 100):
                problems.append(f"{value:g} {unit or '(no unit)'} is not an oxygen "
                                f"{'concentration of 21-100 %' if concentration else 'flow in L/min'}")
            else:
                judged.append(value > room_air)
        if judged:
            self.report.warnings += [f"{where}: {problem}; oxygen judged from the other component" for problem in problems]
            self.rows.append((patient, time, "on_oxygen", float(any(judged)), False, f"fhir:{where.source}"))
            return
        self.report.values_flagged += 1
        self.report.flagged.append((str(where), "on_oxygen", "; ".join(problems)))
        self.rows.append((patient, time, "on_oxygen", float("nan"), True, f"fhir:{where.source}"))

    def lab(self, code: str | None, display: str | None, value: float, unit: str, patient: str,
            time: pd.Timestamp, where: _Where, *, bound: str | None = None) -> None:
        parameter = f"lab:{display or code or 'unnamed'}"
        self.report.lab_codes[parameter] = code or ""
        self.lab_units[parameter].add(unit)
        self.report.values_read += 1
        if bound is not None:  # kept flagged, as the vitals are: a bound is not a value to read
            self.report.values_flagged += 1
            self.report.flagged.append((str(where), parameter, _bound(bound, value, unit)))
        self.rows.append((patient, time, parameter, float("nan") if bound else value, bound is not None,
                          f"fhir:{where.source}"))

    # --- Condition, DocumentReference, Patient

    def condition(self, condition: Any, where: _Where) -> None:
        patient = _patient_id(condition.subject)
        if patient is None:
            self.reject(where, "Condition without a subject reference to a Patient")
            return
        verification, _ = _coding(condition.verificationStatus, None)
        if verification in NOT_A_CONDITION:
            # A ruled-out diagnosis listed as "on record" would read as the opposite of what was said.
            self.conditions_left_out[verification] += 1
            return
        code, display = _coding(condition.code, SNOMED)
        if code is None:  # coded in ICD-10 (or another system) only: say which, never a blank row
            codings = (condition.code.coding or []) if condition.code else []
            other = next((c for c in codings if c.code or c.display), None)
            if other is not None:
                system = CODE_SYSTEMS.get(other.system or "", other.system or "code")
                code, display = f"{system} {other.code or ''}".strip(), other.display or display
        if code is None and not display:
            self.reject(where, "Condition without a code or text: nothing to list")
            return
        onset = condition.onsetDateTime or (condition.onsetPeriod.start if condition.onsetPeriod else None)
        status, _ = _coding(condition.clinicalStatus, None)
        self.conditions.append((patient, code, display, _utc(onset), status))

    def document(self, document: Any, where: _Where) -> None:
        patient = _patient_id(document.subject)
        period = document.context.period if document.context else None
        date = _utc(document.date or (period.start if period else None))
        several = len(document.content) > 1
        for number, content in enumerate(document.content, start=1):
            text, problem = _attachment_text(content.attachment)
            label = f"DocumentReference/{document.id or '?'} attachment {number}"
            if problem:
                self.note_rejected.append(RejectedRow(where.number, f"{where}: {label}: {problem}"))
                self.report.attachments_rejected.append((str(where), f"{label}: {problem}"))
                continue
            note_id = (document.id or f"{where.source}:{where.number}") + (f"#{number}" if several else "")
            self.notes.append(Note(text=text, note_id=note_id, patient_id=patient, source=where.source,
                                   line=where.number))
            self.note_dates[note_id] = date

    def patient(self, patient: Any, where: _Where) -> None:
        self.patients[patient.id or str(where)] = patient
        for link in patient.link or []:
            other = _patient_id(link.other) or str(link.other.reference)
            self.report.linked_patients.append((patient.id or str(where), link.type, other))

    # --- the result

    def finish(self, source: str) -> FhirData:
        report = self.report
        report.source = source
        report.resources_read = dict(self.types)
        report.resources_rejected = len(report.rejected)
        report.observations_mapped, report.observations_unmapped = dict(self.mapped), dict(self.unmapped)
        report.observations_not_numeric = dict(self.not_numeric)
        report.conversions = [f"{parameter}: {count} value(s) in {unit} converted to {UNITS[parameter]}"
                              for (parameter, unit), count in sorted(self.converted.items())]
        report.warnings += [f"{name} is written in several units ({', '.join(sorted(units))}); compare with care"
                            for name, units in sorted(self.lab_units.items()) if len(units) > 1]
        report.conditions = len(self.conditions)
        report.warnings += [f"{count} Condition(s) with verificationStatus {status} not listed"
                            for status, count in sorted(self.conditions_left_out.items())]
        report.patient_records = len(self.patients)
        report.patients = _people(self.patients, report.linked_patients)
        report.warnings += _look_alike_patients(self.patients)
        notes = IngestResult(notes=tuple(self.notes), report=IngestReport(
            source=source, encoding="utf-8", rows_read=len(self.notes) + len(self.note_rejected),
            rows_accepted=len(self.notes), rejected=tuple(self.note_rejected)))
        return FhirData(_vitals_frame(self.rows), _conditions_frame(self.conditions), notes, self.note_dates, report)


# --------------------------------------------------------------------------------- helpers


def _coding(concept: Any, system: str | None) -> tuple[str | None, str | None]:
    """(code, display) of the coding in ``system`` (any system when None), else (None, text)."""
    codings = (concept.coding or []) if concept is not None else []
    chosen = next((c for c in codings if system is None or c.system == system), None)
    text = concept.text if concept is not None else None
    return (chosen.code, chosen.display or text) if chosen is not None else (None, text)


def _bound(comparator: str, value: float, unit: str) -> str:
    return f"{comparator}{value:g} {unit or '(no unit)'} is a bound, not a reading"


def _numbers(obs: Any) -> Iterator[tuple[str | None, str | None, float, str, str | None]]:
    """(LOINC code, display, value, unit, comparator) for the Observation's own value and each
    component's; the comparator ("<", "<=", ">=", ">") is None for a plain value."""
    for part in [obs, *(obs.component or [])]:
        value, unit, comparator = _number(part)
        if value is not None:
            code, display = _coding(part.code, LOINC)
            yield code, display, value, unit, comparator


def _number(part: Any) -> tuple[float | None, str, str | None]:
    quantity = part.valueQuantity
    if quantity is not None and quantity.value is not None:
        # "ad" (sufficient to achieve) is a dose statement, not a bound on a measurement.
        comparator = quantity.comparator if quantity.comparator in ("<", "<=", ">=", ">") else None
        return float(quantity.value), (quantity.code or quantity.unit or "").strip(), comparator
    if part.valueInteger is not None:
        return float(part.valueInteger), "", None
    return None, "", None


def _utc(value: Any) -> pd.Timestamp | None:
    """A FHIR date, dateTime or instant (partial ones such as ``2020-05`` included) in UTC."""
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        return None
    # A dateTime without a zone is the sender's local time; UTC is the least wrong guess.
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _patient_id(reference: Any) -> str | None:
    ref = reference.reference if reference is not None else None
    if not ref:
        return None
    match = _PATIENT_REFERENCE.search(ref)
    if match:
        return match.group(1)
    return ref.removeprefix("urn:uuid:") if ref.startswith("urn:uuid:") else None


def _attachment_text(attachment: Any) -> tuple[str, str | None]:
    """The attachment's text, or why there is none (the library has already decoded base64)."""
    content_type = attachment.contentType or ""
    mime, _, parameters = content_type.partition(";")
    if mime.strip().lower() != "text/plain":
        return "", f"content type {content_type or '(none)'!r} is not text/plain"
    if attachment.data is None:
        return "", f"no inline data{f' (only a url {attachment.url!r})' if attachment.url else ''}"
    charset = re.search(r"charset\s*=\s*\"?([\w.-]+)", parameters, re.IGNORECASE)
    encoding = charset.group(1) if charset else "utf-8"
    try:
        text = attachment.data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return "", f"data is not {encoding} text"
    return (text, None) if text.strip() else ("", "empty text")


def _people(patients: dict[str, Any], links: list[tuple[str, str, str]]) -> int:
    """Distinct people: Patient records joined by any Patient.link count as one."""
    parent = {pid: pid for pid in patients}

    def root(pid: str) -> str:
        while parent.setdefault(pid, pid) != pid:
            pid = parent[pid]
        return pid

    for pid, _, other in links:
        parent[root(pid)] = root(other)
    return len({root(pid) for pid in patients})


def _look_alike_patients(patients: dict[str, Any]) -> list[str]:
    groups: defaultdict[tuple, list[str]] = defaultdict(list)
    for pid, patient in patients.items():
        city = patient.address[0].city if patient.address else None
        if patient.birthDate is not None:
            groups[(str(patient.birthDate), patient.gender, city)].append(pid)
    return [f"Patient records {', '.join(ids)} share birth date {born}, gender {gender} and city {city}; "
            "counted as different people (different ids, no Patient.link)"
            for (born, gender, city), ids in sorted(groups.items()) if len(ids) > 1]


def _vitals_frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    frame = frame.astype({"value": float, "artefact": bool})
    return frame.sort_values(["patient_id", "time", "parameter"], kind="stable").reset_index(drop=True)


def _conditions_frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=CONDITION_COLUMNS)
    frame["onset"] = pd.to_datetime(frame["onset"], utc=True)
    return frame.sort_values(["patient_id", "onset"], kind="stable").reset_index(drop=True)
