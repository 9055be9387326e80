"""The FHIR reader: resources validated, then mapped to vitals rows, conditions, notes and patients.

:func:`read_fhir` (one file), :func:`read_fhir_files` (paths) and :func:`read_fhir_bytes`
(an upload) feed every resource to one :class:`_Reader`, which validates it with
``fhir.resources`` and hands it to the handler for its type; what it accumulated becomes a
:class:`FhirData`. The behaviour is described in :mod:`healthmon.ingest.fhir`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from healthmon.errors import IngestError
from healthmon.ingest.fhir.codes import (
    ACVPU_ANSWERS,
    ACVPU_CODE,
    BP_COMPONENTS,
    BP_PANELS,
    CODE_SYSTEMS,
    LOINC,
    NOT_A_CONDITION,
    NOT_MEASURED,
    OXYGEN_CODES,
    OXYGEN_NAMES,
    SAME,
    SNOMED,
    UNIT_CONVERSIONS,
    VITAL_CODES,
)
from healthmon.ingest.fhir.fields import (
    as_utc,
    attachment_text,
    bound_text,
    code_and_display,
    numbers,
    patient_reference,
)
from healthmon.ingest.fhir.files import Where, library_message, load, resources
from healthmon.types import IngestReport, IngestResult, Note, RejectedRow
from healthmon.vitals.parameters import COLUMNS, UNITS, acvpu_letter, implausible

CONDITION_COLUMNS = ["patient_id", "code", "display", "onset", "clinical_status"]


@dataclass
class FhirReport:
    """What the FHIR files held: resources read and rejected, values mapped, flagged and converted."""

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
    """The vitals table, conditions and notes read from FHIR files, with the report."""

    frame: pd.DataFrame  # healthmon.vitals.parameters.COLUMNS
    conditions: pd.DataFrame  # CONDITION_COLUMNS
    notes: IngestResult
    note_dates: dict[str, pd.Timestamp | None]
    report: FhirReport


def read_fhir(data: bytes | str | Path, name: str | None = None) -> FhirData:
    """Read one FHIR Bundle or NDJSON file; see :mod:`healthmon.ingest.fhir`.

    Args:
        data: the file's bytes or text, or a :class:`~pathlib.Path` to read.
        name: shown in the report and the ``source`` column; default the path's name.

    Raises:
        IngestError: the file is missing, empty, not UTF-8, or holds no FHIR resource.
    """
    text, name = load(data, name)
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
        reader.read(*load(path, None))
    return reader.finish(", ".join(p.name for p in paths))


def read_fhir_bytes(files: dict[str, bytes]) -> FhirData:
    """Several files given as {name: contents} (an upload form) read as one, like :func:`read_fhir_files`."""
    if not files:
        raise IngestError("at least one FHIR file", "no files", "pass the Bundle or NDJSON files to read")
    reader = _Reader()
    for name, data in files.items():
        reader.read(*load(data, name))
    return reader.finish(", ".join(files))


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
        self.seen: dict[str, Where] = {}
        self.patients: dict[str, Any] = {}
        self.types: Counter[str] = Counter()
        self.mapped: Counter[str] = Counter()
        self.unmapped: Counter[str] = Counter()
        self.not_numeric: Counter[str] = Counter()
        self.converted: Counter[tuple[str, str]] = Counter()
        self.lab_units: defaultdict[str, set[str]] = defaultdict(set)

    def read(self, text: str, name: str) -> None:
        found, bad = resources(text, name)
        for where, why in bad:
            self.reject(where, why)
        for where, raw in found:
            self.add(raw, where)

    def reject(self, where: Where, why: str, kind: str | None = None) -> None:
        self.report.rejected.append((str(where), why))
        if kind == "DocumentReference":  # the notes report lists every note that did not arrive
            self.note_rejected.append(RejectedRow(where.number, f"{where}: {why}"))

    def add(self, raw: Any, where: Where) -> None:
        kind = raw.get("resourceType") if isinstance(raw, dict) else None
        if not isinstance(kind, str):
            self.reject(where, "no resource" if raw is None else "not a FHIR resource (no resourceType)")
            return
        self.types[kind] += 1
        try:
            resource = get_fhir_model_class(kind).model_validate(raw)
        except ValueError as exc:  # ValidationError, or an unknown resource type
            self.reject(where, library_message(exc) if isinstance(exc, ValidationError) else str(exc), kind)
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

    def observation(self, obs: Any, where: Where) -> None:
        period = obs.effectivePeriod.start if obs.effectivePeriod else None
        time = as_utc(obs.effectiveDateTime or period or obs.effectiveInstant)
        patient = patient_reference(obs.subject)
        if obs.status in NOT_MEASURED:
            self.reject(where, f"Observation status {obs.status}: not a measurement")
        elif time is None:
            self.reject(where, "Observation without effectiveDateTime, effectivePeriod.start or effectiveInstant")
        elif patient is None:
            self.reject(where, "Observation without a subject reference to a Patient")
        else:
            self.readings(obs, patient, time, where)

    def readings(self, obs: Any, patient: str, time: pd.Timestamp, where: Where) -> None:
        if code_and_display(obs.code, SNOMED)[0] == ACVPU_CODE:
            self.consciousness(obs, patient, time, where)
            return
        code, display = code_and_display(obs.code, LOINC)
        key = code or display or "(no code)"
        readings = list(numbers(obs))
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

    def vital(self, parameter: str, value: float, unit: str, patient: str, time: pd.Timestamp, where: Where, *,
              bound: str | None = None) -> None:
        factors = UNIT_CONVERSIONS[parameter].get(unit.lower())
        problem = None
        if bound is not None:
            # ">600 mg/dL" is a meter's HI: scored as exactly 600 it would under-state the reading.
            problem = f"{bound_text(bound, value, unit)}: not scored"
            value = float("nan")
        elif factors is None:
            problem = f"{value:g} {unit or '(no unit)'} cannot be converted to {UNITS[parameter]}"
            value = float("nan")
        elif factors != SAME:
            value = round(value * factors[0] + factors[1], 2)
            self.converted[(parameter, unit)] += 1
        self.report.values_read += 1
        artefact = problem is not None or implausible(parameter, value)
        if artefact:
            self.report.values_flagged += 1
            self.report.flagged.append((str(where), parameter,
                                        problem or f"{value:g} {UNITS[parameter]} is implausible"))
        self.rows.append((patient, time, parameter, value, artefact, f"fhir:{where.source}"))

    def consciousness(self, obs: Any, patient: str, time: pd.Timestamp, where: Where) -> None:
        """One ACVPU row (0 Alert ... 4 Unresponsive, as the CSV reader writes it)."""
        if obs.valueCodeableConcept is not None:
            answer, text = code_and_display(obs.valueCodeableConcept, SNOMED)
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
            self.rows.append((patient, time, "consciousness", float("ACVPU".index(letter)), False,
                              f"fhir:{where.source}"))
            return
        given = (f"ACVPU answer {answer or '(no SNOMED code)'} {text or ''!r}" if answer or text
                 else "an ACVPU Observation with neither a coded answer, a text answer nor a dataAbsentReason")
        self.report.values_flagged += 1
        self.report.flagged.append((str(where), "consciousness",
                                    f"{given} is not Alert, new Confusion, Voice, Pain or Unresponsive (SNOMED "
                                    "248234008, 130987000, 300202002, 450847001, 422768004)"))
        self.rows.append((patient, time, "consciousness", float("nan"), True, f"fhir:{where.source}"))

    def oxygen(self, parts: list[tuple[str, float, str]], patient: str, time: pd.Timestamp, where: Where) -> None:
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
            self.report.warnings += [f"{where}: {problem}; oxygen judged from the other component"
                                     for problem in problems]
            self.rows.append((patient, time, "on_oxygen", float(any(judged)), False, f"fhir:{where.source}"))
            return
        self.report.values_flagged += 1
        self.report.flagged.append((str(where), "on_oxygen", "; ".join(problems)))
        self.rows.append((patient, time, "on_oxygen", float("nan"), True, f"fhir:{where.source}"))

    def lab(self, code: str | None, display: str | None, value: float, unit: str, patient: str,
            time: pd.Timestamp, where: Where, *, bound: str | None = None) -> None:
        parameter = f"lab:{display or code or 'unnamed'}"
        self.report.lab_codes[parameter] = code or ""
        self.lab_units[parameter].add(unit)
        self.report.values_read += 1
        if bound is not None:  # kept flagged, as the vitals are: a bound is not a value to read
            self.report.values_flagged += 1
            self.report.flagged.append((str(where), parameter, bound_text(bound, value, unit)))
        self.rows.append((patient, time, parameter, float("nan") if bound else value, bound is not None,
                          f"fhir:{where.source}"))

    # --- Condition, DocumentReference, Patient

    def condition(self, condition: Any, where: Where) -> None:
        patient = patient_reference(condition.subject)
        if patient is None:
            self.reject(where, "Condition without a subject reference to a Patient")
            return
        verification, _ = code_and_display(condition.verificationStatus, None)
        if verification in NOT_A_CONDITION:
            # A ruled-out diagnosis listed as "on record" would read as the opposite of what was said.
            self.conditions_left_out[verification] += 1
            return
        code, display = code_and_display(condition.code, SNOMED)
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
        status, _ = code_and_display(condition.clinicalStatus, None)
        self.conditions.append((patient, code, display, as_utc(onset), status))

    def document(self, document: Any, where: Where) -> None:
        patient = patient_reference(document.subject)
        period = document.context.period if document.context else None
        date = as_utc(document.date or (period.start if period else None))
        several = len(document.content) > 1
        for number, content in enumerate(document.content, start=1):
            text, problem = attachment_text(content.attachment)
            label = f"DocumentReference/{document.id or '?'} attachment {number}"
            if problem:
                self.note_rejected.append(RejectedRow(where.number, f"{where}: {label}: {problem}"))
                self.report.attachments_rejected.append((str(where), f"{label}: {problem}"))
                continue
            note_id = (document.id or f"{where.source}:{where.number}") + (f"#{number}" if several else "")
            self.notes.append(Note(text=text, note_id=note_id, patient_id=patient, source=where.source,
                                   line=where.number))
            self.note_dates[note_id] = date

    def patient(self, patient: Any, where: Where) -> None:
        self.patients[patient.id or str(where)] = patient
        for link in patient.link or []:
            other = patient_reference(link.other) or str(link.other.reference)
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


# --------------------------------------------------------------------------------- the result


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
