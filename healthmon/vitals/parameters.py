"""What healthmon knows about each vital-sign parameter, whatever file it came from.

The long vitals table's columns (:data:`COLUMNS`), each parameter's canonical unit
(:data:`UNITS`) and plausible range (:data:`PLAUSIBLE`), unit conversion factors, the ACVPU
consciousness words, and which parameters are whole-number counts. Every device reader
(``healthmon.ingest``) and every score or trend (``healthmon.vitals``) reads these, so a
parameter means the same thing from a CSV, a Fitbit export, a PhysioNet record or FHIR.
"""

from __future__ import annotations

__all__ = [
    "ACVPU_WORDS",
    "COLUMNS",
    "COUNTS",
    "LB_TO_KG",
    "MMOL_TO_MG_DL",
    "PLAUSIBLE",
    "UNITS",
    "acvpu_letter",
    "implausible",
]

#: The long vitals table: one row per patient, time and parameter; values in canonical units.
COLUMNS = ["patient_id", "time", "parameter", "value", "artefact", "source"]

#: Canonical parameter -> its unit.
UNITS = {"heart_rate": "/min", "systolic_bp": "mmHg", "diastolic_bp": "mmHg", "spo2": "%", "respiration_rate": "/min",
         "temperature": "°C", "consciousness": "ACVPU", "on_oxygen": "yes/no", "steps": "steps", "sleep_minutes": "min",
         "glucose": "mg/dL", "weight": "kg"}
# Values outside these (canonical units) are artefacts: a heart rate of 0 or 400, SpO2 over
# 100 %, negative steps.
# The lower limits are below what a living patient can be measured at, not below what is
# normal: 28 °C (accidental hypothermia) is real and must keep its 3 NEWS2 points.
PLAUSIBLE = {"heart_rate": (20, 300), "systolic_bp": (40, 300), "diastolic_bp": (20, 200), "spo2": (50, 100),
             "respiration_rate": (3, 80), "temperature": (25.0, 45.0), "steps": (0, 100_000),
             "sleep_minutes": (0, 1440), "glucose": (10, 1500), "weight": (1, 400)}
MMOL_TO_MG_DL = 18.016  # glucose, 180.16 g/mol
LB_TO_KG = 0.45359237
ACVPU_WORDS = {"alert": "A", "confusion": "C", "confused": "C", "new confusion": "C", "voice": "V", "verbal": "V",
               "responds to voice": "V", "pain": "P", "painful": "P", "responds to pain": "P", "unresponsive": "U",
               "unconscious": "U", "mentally alert": "A", "acute confusion": "C"}  # the last two: SNOMED's wording
# Whole-number counts, where "12,345" (or "12.345" in a decimal-comma file) can only be a thousands
# separator: read as a decimal it would be a plausible 12 steps, neither flagged nor noticed.
COUNTS = ("steps", "sleep_minutes")


def acvpu_letter(text: str) -> str:
    """The ACVPU letter a cell or argument means ("V", "verbal", "new confusion"), or "" where it
    means none: a word is never read by its first letter ("agitated" is not A, Alert)."""
    word = text.strip()
    letter = word.upper() if len(word) == 1 else ACVPU_WORDS.get(word.lower(), "")
    return letter if letter and letter in "ACVPU" else ""  # "N", "?" or "1" name no level


def implausible(parameter: str, value: float) -> bool:
    """Outside :data:`PLAUSIBLE` for its parameter (a parameter without limits never is)."""
    if parameter not in PLAUSIBLE:
        return False
    low, high = PLAUSIBLE[parameter]
    return not low <= value <= high
