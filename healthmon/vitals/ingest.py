"""Device vitals from a generic wide CSV: columns found by alias, units converted, artefacts flagged.

Output is one long table (:data:`COLUMNS`): one row per patient, time and parameter, with
the value in healthmon's canonical unit and an ``artefact`` flag. Flagged values are kept
(so nothing read is lost and the report can point at them) but never scored. The report
says what was read, converted, flagged and rejected; a row whose time cannot be read is
rejected with its line number, a blank cell is simply a parameter not measured.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import pandas as pd

from healthmon.errors import IngestError

COLUMNS = ["patient_id", "time", "parameter", "value", "artefact", "source"]

# Canonical parameter -> its unit and the column names (normalised) that mean it.
UNITS = {"heart_rate": "/min", "systolic_bp": "mmHg", "diastolic_bp": "mmHg", "spo2": "%", "respiration_rate": "/min",
         "temperature": "°C", "consciousness": "ACVPU", "on_oxygen": "yes/no", "steps": "steps", "sleep_minutes": "min",
         "glucose": "mg/dL", "weight": "kg"}
ALIASES = {
    "time": ["timestamp", "time", "datetime", "date", "measured_at", "charttime", "recorded_at", "activitydate"],
    "patient_id": ["patient_id", "patient", "subject_id", "subject", "mrn", "id"],
    "heart_rate": ["heart_rate", "hr", "pulse", "bpm", "heartrate", "pulse_rate"],
    "systolic_bp": ["systolic_bp", "sbp", "systolic", "sys", "bp_systolic", "nisysabp", "sysabp"],
    "diastolic_bp": ["diastolic_bp", "dbp", "diastolic", "dia", "bp_diastolic", "nidiasabp", "diasabp"],
    "blood_pressure": ["bp", "blood_pressure"],  # "120/80" in one cell
    "spo2": ["spo2", "sao2", "o2sat", "oxygen_saturation", "spo2_pct", "saturation"],
    "respiration_rate": ["respiration_rate", "rr", "resp", "resp_rate", "respiratory_rate", "respiration"],
    "temperature": ["temperature", "temp", "temp_c", "temp_f", "body_temperature", "temperature_f", "temperature_c"],
    "consciousness": ["consciousness", "acvpu", "avpu", "loc"],
    "on_oxygen": ["on_oxygen", "supplemental_oxygen", "oxygen", "o2"],
    "steps": ["steps", "step_count", "totalsteps"],
    "sleep_minutes": ["sleep_minutes", "sleep", "totalminutesasleep", "minutes_asleep"],
    "glucose": ["glucose", "blood_glucose", "bg", "glucose_mgdl", "glucose_mg_dl", "glucose_mmol", "glucose_mmol_l"],
    "weight": ["weight", "weight_kg", "weightkg", "weight_lb", "weight_lbs", "weightpounds"],
}
# Values outside these (canonical units) are artefacts: a heart rate of 0 or 400, SpO2 over
# 100 %, negative steps.
PLAUSIBLE = {"heart_rate": (20, 300), "systolic_bp": (40, 300), "diastolic_bp": (20, 200), "spo2": (50, 100),
             "respiration_rate": (3, 80), "temperature": (30.0, 45.0), "steps": (0, 100_000),
             "sleep_minutes": (0, 1440), "glucose": (10, 1500), "weight": (1, 400)}
MMOL_TO_MG_DL = 18.016  # glucose, 180.16 g/mol
LB_TO_KG = 0.45359237
ACVPU_WORDS = {"alert": "A", "confusion": "C", "confused": "C", "new confusion": "C", "voice": "V", "pain": "P",
               "unresponsive": "U"}
YES = {"1", "true", "yes", "y", "o2", "oxygen"}
NO = {"0", "false", "no", "n", "air", "room air", "ra"}


@dataclass
class VitalsReport:
    source: str
    rows_read: int = 0
    rows_rejected: int = 0
    values_read: int = 0
    values_flagged: int = 0
    columns: dict[str, str] = field(default_factory=dict)
    conversions: list[str] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    flagged: list[tuple[int, str, str]] = field(default_factory=list)  # (line, parameter, why)
    ignored_columns: list[str] = field(default_factory=list)
    # No patient column and no patient id given: the rows carry the file name as a stand-in,
    # which must not be stored (two people's "export.csv" would merge).
    patient_from_file_name: bool = False


@dataclass
class VitalsData:
    frame: pd.DataFrame
    report: VitalsReport


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower().replace("°", "")).strip("_")


def _map_columns(header: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    normalised = {_norm(h): h for h in header}
    for canonical, names in ALIASES.items():
        for alias in names:
            if alias in normalised and canonical not in found and normalised[alias] not in found.values():
                found[canonical] = normalised[alias]
                break
    return found


def read_vitals_csv(data: bytes | str, name: str = "vitals.csv", *, patient_id: str | None = None) -> VitalsData:
    """Read a wide vitals CSV (a time column plus any vitals columns); see the module docstring.

    Args:
        patient_id: used when the file has no patient column (one patient's device export).
    """
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise IngestError("a comma-separated file with a header row", f"{name}: {exc}",
                          "export the device data as CSV (one row per time point)") from exc
    mapping = _map_columns(list(raw.columns))
    report = VitalsReport(source=name, rows_read=len(raw), columns=mapping)
    if "time" not in mapping:
        raise IngestError("a time column (timestamp, time, datetime, date ...)",
                          f"columns {', '.join(raw.columns) or '(none)'}", "add or rename the time column")
    measured = [c for c in mapping if c in UNITS or c == "blood_pressure"]
    if not measured:
        raise IngestError("at least one vitals column (heart rate, blood pressure, SpO2, ...)",
                          f"columns {', '.join(raw.columns)}", "rename the columns or see the README for the aliases")
    report.ignored_columns = [c for c in raw.columns if c not in mapping.values()]
    times = pd.to_datetime(raw[mapping["time"]], errors="coerce", utc=True, format="mixed")
    patients = raw[mapping["patient_id"]] if "patient_id" in mapping else pd.Series([patient_id or name] * len(raw))
    report.patient_from_file_name = "patient_id" not in mapping and not patient_id
    rows = []
    for index in range(len(raw)):
        line = index + 2  # header is line 1
        if pd.isna(times.iloc[index]):
            report.rows_rejected += 1
            report.rejected.append((line, f"unreadable time {raw[mapping['time']].iloc[index]!r}"))
            continue
        for canonical in measured:
            cell = raw[mapping[canonical]].iloc[index].strip()
            if not cell:
                continue
            for parameter, value, problem in _parse(canonical, cell, mapping[canonical], raw[mapping[canonical]]):
                report.values_read += 1
                artefact = problem is not None or implausible(parameter, value)
                if artefact:
                    report.values_flagged += 1
                    report.flagged.append((line, parameter, problem or f"{value:g} {UNITS[parameter]} is implausible"))
                rows.append((str(patients.iloc[index]), times.iloc[index], parameter,
                             value if problem is None else float("nan"), artefact, name))
    report.conversions = sorted(_conversions(mapping, raw))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return VitalsData(frame.sort_values(["patient_id", "time", "parameter"], kind="stable").reset_index(drop=True), report)


def implausible(parameter: str, value: float) -> bool:
    """Outside :data:`PLAUSIBLE` for its parameter (a parameter without limits never is)."""
    if parameter not in PLAUSIBLE:
        return False
    low, high = PLAUSIBLE[parameter]
    return not low <= value <= high


def _fahrenheit(column: str, values: pd.Series) -> bool:
    norm = _norm(column)
    if norm.endswith(("_f", "fahrenheit")):
        return True
    if norm.endswith(("_c", "celsius")):
        return False
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(numbers)) and float(numbers.median()) > 50  # no living patient is 50 °C; 95-105 °F is normal


def _mmol(column: str, values: pd.Series) -> bool:
    norm = _norm(column)
    if "mmol" in norm:
        return True
    if "mg" in norm:
        return False
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(numbers)) and float(numbers.median()) < 35  # 35 mmol/L is extreme; 35 mg/dL is rare


def _conversions(mapping: dict[str, str], raw: pd.DataFrame) -> list[str]:
    notes = []
    if "temperature" in mapping and _fahrenheit(mapping["temperature"], raw[mapping["temperature"]]):
        notes.append(f"temperature '{mapping['temperature']}' read as °F, converted to °C")
    if "glucose" in mapping and _mmol(mapping["glucose"], raw[mapping["glucose"]]):
        notes.append(f"glucose '{mapping['glucose']}' read as mmol/L, converted to mg/dL (x {MMOL_TO_MG_DL})")
    if "weight" in mapping and _norm(mapping["weight"]).endswith(("lb", "lbs", "pounds")):
        notes.append(f"weight '{mapping['weight']}' read as lb, converted to kg")
    return notes


def _parse(canonical: str, cell: str, column: str, values: pd.Series):  # noqa: ANN202 - yields (parameter, value, problem)
    if canonical == "blood_pressure":
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*", cell)
        if match is None:
            yield "systolic_bp", float("nan"), f"blood pressure {cell!r} is not systolic/diastolic"
            return
        yield "systolic_bp", float(match.group(1)), None
        yield "diastolic_bp", float(match.group(2)), None
        return
    if canonical == "consciousness":
        word = cell.strip().lower()
        letter = ACVPU_WORDS.get(word, word.upper()[:1] if len(word) == 1 else "")
        if letter not in "ACVPU" or not letter:
            yield canonical, float("nan"), f"consciousness {cell!r} is not A, C, V, P or U"
        else:
            yield canonical, float("ACVPU".index(letter)), None  # 0 = Alert ... 4 = Unresponsive
        return
    if canonical == "on_oxygen":
        word = cell.strip().lower()
        if word in YES or word in NO:
            yield canonical, 1.0 if word in YES else 0.0, None
        else:
            yield canonical, float("nan"), f"oxygen {cell!r} is not yes/no (or air/O2)"
        return
    try:
        value = float(cell.replace(",", "."))
    except ValueError:
        yield canonical, float("nan"), f"{canonical.replace('_', ' ')} {cell!r} is not a number"
        return
    if canonical == "temperature" and _fahrenheit(column, values):
        value = round((value - 32) * 5 / 9, 2)
    elif canonical == "glucose" and _mmol(column, values):
        value = round(value * MMOL_TO_MG_DL, 1)
    elif canonical == "weight" and _norm(column).endswith(("lb", "lbs", "pounds")):
        value = round(value * LB_TO_KG, 2)
    yield canonical, value, None
