"""Bodies of ``/vitals:score`` and ``/patients/{id}/report`` (pydantic).

A JSON reading carries the generic vitals CSV's columns (the same names and aliases), so a
reading sent as JSON and the same row in a CSV give the same scores.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

LOOKBACK = r"^\s*\d+(\.\d+)?\s*[A-Za-z]+\s*$"


class Reading(BaseModel):
    """One row of readings; any other column name the generic vitals CSV reader knows (an alias such
    as `hr`, `sbp`, `temp_f`, `avpu`) is accepted too, and an unknown one is refused."""

    model_config = ConfigDict(extra="allow")

    patient_id: str = Field(min_length=1, max_length=200, description="The patient's id in your system.")
    time: str = Field(min_length=1, max_length=64, description="When measured: ISO 8601 (`2026-03-01T08:00:00Z`); "
                      "without a zone it is read as UTC.")
    heart_rate: float | None = Field(None, description="/min")
    systolic_bp: float | None = Field(None, description="mmHg")
    diastolic_bp: float | None = Field(None, description="mmHg")
    blood_pressure: str | None = Field(None, max_length=20, description="`120/80` in one field (instead of the two).")
    respiration_rate: float | None = Field(None, description="/min (alias `respiratory_rate`, `rr`)")
    spo2: float | None = Field(None, description="%")
    temperature: float | None = Field(None, description="°C (`temperature_f` for °F)")
    consciousness: str | None = Field(None, max_length=20, description="ACVPU: A, C, V, P or U.")
    on_oxygen: bool | str | None = Field(None, description="Supplemental oxygen: true / false (or yes, no, air, o2).")
    glucose: float | None = Field(None, description="mg/dL (`glucose_mmol` for mmol/L)")
    weight: float | None = Field(None, description="kg (`weight_lb` for pounds)")
    steps: float | None = Field(None, description="steps that day")
    sleep_minutes: float | None = Field(None, description="minutes asleep")


class VitalsScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    readings: list[Reading] = Field(min_length=1, description="Readings of one or more patients, any order.")
    setting: Literal["hospital", "home"] | None = Field(
        None, description="NEWS2 and blood-pressure setting; unset, preset per patient: hospital where the readings "
                          "chart consciousness or air/oxygen, else home.")
    spo2_scale: Literal[1, 2] | None = Field(
        None, description="NEWS2 SpO2 scale; unset, the patient's scale on record (2: a prescribed 88-92 % target), "
                          "else 1.")
    lookback: str = Field("4h", max_length=20, pattern=LOOKBACK,
                          description="How old a parameter's latest value may be for NEWS2 (4h, 90min, 1h).")
    date_order: Literal["day/month", "month/day"] | None = Field(
        None, description="How to read dates such as 03/04/2026 (default day/month, reported as ambiguous).")


class RejectedRow(BaseModel):
    where: str = Field(description="The file and line (a CSV), or `readings[i]` (JSON, from 0).")
    why: str


class FlaggedValue(BaseModel):
    where: str
    parameter: str
    why: str


class RejectedRows(BaseModel):
    count: int
    rows: list[RejectedRow]


class FlaggedValues(BaseModel):
    count: int
    rows: list[FlaggedValue]


class Basis(BaseModel):
    setting: str
    basis: str


class ScaleBasis(BaseModel):
    scale: Literal[1, 2]
    basis: str


class News2Latest(BaseModel):
    time: datetime
    total: int
    band: str
    complete: bool
    missing: str = Field(description="Parameters not measured within the lookback, comma-separated.")
    caveat: str


class News2Point(News2Latest):
    red_flag: bool = Field(description="A single parameter scored 3.")
    points: dict[str, int | None] = Field(description="Points per NEWS2 parameter (null: not measured).")
    values: dict[str, float | str | bool | None] = Field(description="The reading behind each parameter's points.")


class AlertReading(BaseModel):
    time: datetime
    value: float | None


class VitalsAlert(BaseModel):
    time: datetime
    severity: str
    rule_id: str
    message: str
    parameter: str
    kind: str = Field(description="`sustained_shift`, `sudden_jump` or `news2`.")
    direction: str
    value: float | None
    baseline: float | None
    current: float | None
    change: float | None
    unit: str | None
    threshold: float | None
    readings: list[AlertReading] = Field(description="The readings that fired it, oldest first.")


class PatientScores(BaseModel):
    patient_id: str
    readings: int = Field(description="Values read for the patient (all parameters).")
    setting: Basis
    news2: News2Latest | None = Field(description="The latest NEWS2.")
    news2_over_time: list[News2Point] = Field(description="NEWS2 at every time point with a reading.")
    bp: dict[str, Any] | None = Field(description="Blood-pressure category of the last week's readings (ACC/AHA; "
                                      "`esc_esh` grade for office readings), crisis readings, and how it was averaged.")
    alerts: list[VitalsAlert]
    spo2_scale: ScaleBasis
    checks_not_possible: list[str] = Field(description="Trend rules that could not be checked, and why.")
    summary: str = Field(description="The sentence the classifier reads.")
    not_alerted: list[str] = Field(description="Readings a rule set aside, and why.")
    crisis_estimates: list[str] = Field(description="Cuffless estimates above 180/120, to confirm with a cuff.")


class VitalsScoreResponse(BaseModel):
    stored: Literal[False] = Field(description="Always false: this route stores nothing.")
    format: str = Field(description="The format read: csv, physionet, fitbit or fhir.")
    summary: list[str] = Field(description="What the reader read, converted, flagged and rejected, in sentences.")
    rejected: RejectedRows
    flagged: FlaggedValues = Field(description="Implausible values: kept in the report, never scored.")
    ambiguous_dates: bool = Field(description="Dates such as 03/04/2026 read in the default or given order.")
    patients: list[PatientScores]
