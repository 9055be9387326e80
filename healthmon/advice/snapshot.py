"""A patient's record gathered at one moment, and the facts the advice rules read from it.

Values only: :func:`healthmon.services.patients.patient_snapshot` reads the database and
builds a :class:`PatientSnapshot`; the Patient page, the CLI, the case report and the FHIR
export all start from one, so they show the same scores and fire the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd

from healthmon.advice.engine import PatientFindings
from healthmon.types import CaseView
from healthmon.vitals.assess import VitalsAssessment


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
# their original text, so their fingerprints did not change. healthmon.services.advice reads it back.
SCALE_2_MARK = "SpO2 scale 2"


def scale_on_record(recorded: SpO2Prescription | None) -> int:
    """The scale a patient is scored on by default: the recorded one, or 1 where none was."""
    return recorded.scale if recorded is not None else 1


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


def age_on(born: date, on: date) -> float:
    return float(on.year - born.year - ((on.month, on.day) < (born.month, born.day)))


ALERT_WINDOW = pd.Timedelta(days=14)  # alerts older than this before the latest reading are history, not findings


def vitals_facts(assessment: VitalsAssessment | None) -> dict:
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
