"""One patient's stored record, gathered once: scored notes, vitals assessment, demographics,
and the findings the advice rules read. The Patient page, the CLI and the case report all
start from :func:`patient_snapshot`, so they show the same scores and fire the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from healthmon.advice.engine import PatientFindings
from healthmon.advice.rules import AdviceError
from healthmon.cases import CaseView, case_detail
from healthmon.storage.db import transaction
from healthmon.storage.models import Case, NoteRow, Patient, VitalReading, as_utc
from healthmon.vitals.assess import VitalsAssessment, assess_patient, readings_setting
from healthmon.vitals.store import load_vitals, stored_descriptors


@dataclass(frozen=True)
class SpO2Prescription:
    """A clinician's record of the NEWS2 SpO2 scale a patient is scored on: 2 for a prescribed
    88-92 % target (e.g. hypercapnic respiratory failure), or 1 again where that was withdrawn."""

    scale: int
    reason: str
    set_by: str
    set_at: datetime | None  # UTC; None only where the row was edited by hand

    @property
    def words(self) -> str:
        when = f" on {self.set_at:%Y-%m-%d %H:%M} UTC" if self.set_at is not None else ""
        return f"scale {self.scale} recorded by {self.set_by or 'an unknown user'}{when}" + (
            f": {self.reason}" if self.reason else "")


# How a finding scored on scale 2 says so (trigger details, alert messages); scale-1 findings keep
# their original text, so their fingerprints did not change. healthmon.advice.store reads it back.
SCALE_2_MARK = "SpO2 scale 2"


def scale_on_record(recorded: SpO2Prescription | None) -> int:
    """The scale a patient is scored on by default: the recorded one, or 1 where none was."""
    return recorded.scale if recorded is not None else 1


def _prescription(patient: Patient) -> SpO2Prescription | None:
    if patient.spo2_scale is None:
        return None
    return SpO2Prescription(patient.spo2_scale, patient.spo2_scale_reason or "", patient.spo2_scale_set_by or "",
                            as_utc(patient.spo2_scale_set_at))


def recorded_spo2_scale(factory: sessionmaker[Session], patient_id: str) -> SpO2Prescription | None:
    """The scale recorded for a stored patient; None where none was recorded or the patient is
    not stored (both are scored on scale 1)."""
    with transaction(factory) as s:
        patient = s.scalar(select(Patient).where(Patient.external_id == str(patient_id)))
        return None if patient is None else _prescription(patient)


def spo2_scale_basis(used: int, recorded: SpO2Prescription | None) -> str:
    """Why a score used the scale it did, for the pages, the report and the FHIR export: a
    scale chosen for one view and the one on record must never be confused."""
    if recorded is None:
        return "no prescribed target on record" + ("; chosen for this view" if used == 2 else "")
    if recorded.scale == used:
        return recorded.words
    return f"chosen for this view; on record: {recorded.words}"


@dataclass(frozen=True)
class PatientSnapshot:
    patient_id: str
    birth_date: date | None
    sex: str | None
    age: float | None
    age_source: str  # "birth date", "PhysioNet descriptor" or ""
    cases: tuple[CaseView, ...]  # the patient's scored notes, newest first
    vitals: VitalsAssessment | None
    setting: str
    findings: PatientFindings
    taken_at: datetime
    spo2_prescription: SpO2Prescription | None = None  # as recorded; the scale used is on ``vitals``

    @property
    def spo2_scale_sentence(self) -> str:
        """Which SpO2 scale NEWS2 used and on what basis, as the report and the FHIR export say it."""
        if self.vitals is None:
            return ""
        return (f"SpO2 scored on {self.vitals.spo2_scale_words}; "
                f"{spo2_scale_basis(self.vitals.spo2_scale, self.spo2_prescription)}.")


def list_patients(factory: sessionmaker[Session]) -> list[str]:
    """Patients with a scored note or stored vitals, by external id."""
    with transaction(factory) as s:
        scored = select(NoteRow.patient_id).join(Case, Case.note_id == NoteRow.id).where(Case.prediction_id.is_not(None))
        measured = select(VitalReading.patient_id).distinct()
        rows = s.scalars(select(Patient.external_id).where(Patient.id.in_(scored.union(measured)))
                         .order_by(Patient.external_id)).all()
    return list(rows)


def _age(born: date, on: date) -> float:
    return float(on.year - born.year - ((on.month, on.day) < (born.month, born.day)))


def patient_snapshot(factory: sessionmaker[Session], patient_id: str, *, setting: str | None = None,
                     spo2_scale: int | None = None, lookback: str = "4h", now: datetime | None = None) -> PatientSnapshot:
    """Everything stored about one patient and the facts the advice rules read.

    Risk per label is the highest calibrated probability over the patient's scored notes
    (a screening rule should fire if any note suggests the condition), leaving out notes a
    reviewer labelled without it; each names the case and model version it came from.
    Vitals facts describe the patient's latest readings: the latest NEWS2, the blood
    pressure of the last week of readings, and alerts from the last 14 days of readings.

    ``setting`` None (the default) is preset from the stored readings
    (:func:`healthmon.vitals.assess.readings_setting`: hospital where a ward charted
    consciousness or air/oxygen, else home); the snapshot's ``setting`` says which.

    ``spo2_scale`` None (the default) scores SpO2 on the scale recorded for the patient
    (:func:`healthmon.advice.store.set_spo2_scale`), or scale 1 where none was; 1 or 2 overrides
    it for this snapshot, and :attr:`PatientSnapshot.spo2_scale_sentence` then says so.

    Raises:
        AdviceError: no patient with that id, or a scale other than 1 or 2.
    """
    if spo2_scale is not None and spo2_scale not in (1, 2):
        raise AdviceError("SpO2 scale 1 or 2", repr(spo2_scale),
                          "use scale 2 only for a prescribed 88-92 % target, otherwise 1")
    now = now or datetime.now(timezone.utc)
    with transaction(factory) as s:
        patient = s.scalar(select(Patient).where(Patient.external_id == patient_id))
        if patient is None:
            raise AdviceError("a stored patient", f"no patient {patient_id!r}",
                              "store notes with a patient_id column, or vitals for that patient, first")
        born, sex, prescription = patient.birth_date, patient.sex, _prescription(patient)
        note_ids = s.scalars(select(NoteRow.id).join(Case, Case.note_id == NoteRow.id)
                             .where(NoteRow.patient_id == patient.id, Case.prediction_id.is_not(None))
                             .order_by(NoteRow.id.desc())).all()
    cases = tuple(case_detail(factory, note_id) for note_id in note_ids)
    risk: dict[str, float] = {}
    risk_source: dict[str, str] = {}
    for case in cases:
        for label, probability in case.probabilities.items():
            if case.final_labels is not None and label not in case.final_labels:
                continue  # a reviewer said this note does not carry the label: the model's score does not count
            if probability > risk.get(label, -1.0):
                risk[label] = float(probability)
                reviewed = ", confirmed by review" if case.final_labels is not None else ""
                risk_source[label] = f"case #{case.note_id}, model {case.version}{reviewed}"
    if spo2_scale is None:
        spo2_scale = scale_on_record(prescription)
    vitals_table = load_vitals(factory, patient_id)
    if setting is None:
        setting = readings_setting(vitals_table, patient_id)
    descriptors = stored_descriptors(factory, patient_id) if len(vitals_table) else None
    assessment = (assess_patient(vitals_table, patient_id, setting=setting, spo2_scale=spo2_scale,
                                 lookback=lookback, descriptors=descriptors) if len(vitals_table) else None)
    age, age_source = None, ""
    if born is not None:
        age, age_source = _age(born, now.date()), "birth date"
    elif descriptors and descriptors.get("Age", -1) >= 0:
        age, age_source = float(descriptors["Age"]), "PhysioNet descriptor"
    if sex is None and descriptors and descriptors.get("Gender") in (0, 1):
        sex = "female" if descriptors["Gender"] == 0 else "male"
    findings = PatientFindings(patient_id=patient_id, risk=risk, risk_source=risk_source, age=age, sex=sex,
                               setting=setting if assessment is not None else None, **_vitals_facts(assessment))
    return PatientSnapshot(patient_id, born, sex, age, age_source, cases, assessment, setting, findings, now,
                           prescription)


ALERT_WINDOW = pd.Timedelta(days=14)  # alerts older than this before the latest reading are history, not findings


def _vitals_facts(assessment: VitalsAssessment | None) -> dict:
    if assessment is None:
        return {}
    facts: dict = {}
    latest = assessment.latest_news2
    if latest is not None:
        facts.update(news2_total=int(latest["total"]), news2_band=str(latest["band"]),
                     news2_red_flag=bool(latest["red_flag"]), news2_complete=bool(latest["complete"]),
                     # The scale is part of the finding: a 7 on scale 1 may be a 5 on scale 2, and an
                     # approved advice's trigger must say which it was. Scale 1 keeps the old text, so
                     # advice already drafted is not drafted again.
                     news2_time=f"{latest['time']:%Y-%m-%d %H:%M} UTC" + ("" if latest["complete"] else ", partial")
                     + (f", {SCALE_2_MARK}" if assessment.spo2_scale == 2 else ""))
    # A cuffless wearable's estimates are trend-only: no rule may stage, treat or escalate on them,
    # so the rules see no blood pressure (and "measure blood pressure" can fire).
    if assessment.bp is not None and not assessment.bp.cuffless:
        pairs = assessment.bp_readings
        window = (f"mean of {len(pairs)} reading(s), {pairs[0][0]:%Y-%m-%d} to {pairs[-1][0]:%Y-%m-%d}" if pairs else "")
        facts.update(bp_category=assessment.bp.category, bp_systolic=float(assessment.bp.systolic),
                     bp_diastolic=float(assessment.bp.diastolic), bp_setting=assessment.bp.setting, bp_window=window,
                     bp_crisis=bool(assessment.bp_crisis) or bool(assessment.bp.crisis),
                     bp_crisis_readings=tuple(assessment.bp_crisis))
    if len(assessment.alerts):
        recent = assessment.alerts[assessment.alerts["time"] >= assessment.vitals["time"].max() - ALERT_WINDOW]
        alerts: dict[str, str] = {}
        for row in recent.sort_values("time").to_dict("records"):
            message = str(row["message"])  # the latest alert of each rule
            if str(row["rule_id"]).startswith("news2") and assessment.spo2_scale == 2:
                # As for news2_time: a trigger scored on scale 2 says so (scale 1 keeps its text).
                message += f" {SCALE_2_MARK}."
            alerts[str(row["rule_id"])] = message
        if alerts:
            facts["alerts"] = alerts
    return facts
