"""One patient's stored record, gathered once: scored notes, vitals assessment, demographics,
and the findings the advice rules read. The Patient page, the CLI and the case report all
start from :func:`patient_snapshot`, so they show the same scores and fire the same rules.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from healthmon.advice.engine import PatientFindings
from healthmon.advice.rules import AdviceError
from healthmon.advice.snapshot import PatientSnapshot, SpO2Prescription, age_on, scale_on_record, vitals_facts
from healthmon.services.cases import case_detail
from healthmon.services.vitals import load_vitals, stored_descriptors
from healthmon.storage.db import transaction
from healthmon.storage.models import Case, NoteRow, Patient, VitalReading
from healthmon.types import as_utc
from healthmon.vitals.assess import assess_patient, readings_setting


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


def list_patients(factory: sessionmaker[Session]) -> list[str]:
    """Patients with a scored note or stored vitals, by external id."""
    with transaction(factory) as s:
        scored = select(NoteRow.patient_id).join(Case, Case.note_id == NoteRow.id).where(Case.prediction_id.is_not(None))
        measured = select(VitalReading.patient_id).distinct()
        rows = s.scalars(select(Patient.external_id).where(Patient.id.in_(scored.union(measured)))
                         .order_by(Patient.external_id)).all()
    return list(rows)


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
    (:func:`healthmon.services.advice.set_spo2_scale`), or scale 1 where none was; 1 or 2 overrides
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
        if case.regression:
            continue  # a predicted value, not a probability: the advice rules' risk facts are probabilities
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
        age, age_source = age_on(born, now.date()), "birth date"
    elif descriptors and descriptors.get("Age", -1) >= 0:
        age, age_source = float(descriptors["Age"]), "PhysioNet descriptor"
    if sex is None and descriptors and descriptors.get("Gender") in (0, 1):
        sex = "female" if descriptors["Gender"] == 0 else "male"
    findings = PatientFindings(patient_id=patient_id, risk=risk, risk_source=risk_source, age=age, sex=sex,
                               setting=setting if assessment is not None else None, **vitals_facts(assessment))
    return PatientSnapshot(patient_id, born, sex, age, age_source, cases, assessment, setting, findings, now,
                           prescription)


