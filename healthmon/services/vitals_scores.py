"""Device readings scored without storing them: ``python -m healthmon vitals`` and ``POST /api/v1/vitals:score``.

One function shapes a patient's scores for both doors, so the command line and the API cannot
drift; the reader's report (every rejected row and flagged artefact) goes with them.
Storing readings is :mod:`healthmon.services.vitals`.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from healthmon.advice.snapshot import scale_on_record, spo2_scale_basis
from healthmon.errors import IngestError
from healthmon.ingest.columns import alias_key
from healthmon.ingest.devices import DeviceData, read_device_files
from healthmon.ingest.vitals_csv import ALIASES
from healthmon.services.accounts import AuthError, SignedIn, require
from healthmon.services.patients import recorded_spo2_scale
from healthmon.vitals.assess import assess_patient, readings_setting

READINGS_NAME = "readings"  # the JSON readings' stand-in file name, so the reader's "line N" can become readings[i]
_NEWS2_POINTS = ("respiration_rate", "spo2", "air_or_oxygen", "systolic_bp", "heart_rate", "consciousness",
                 "temperature")
_NEWS2_VALUES = ("respiration_rate", "spo2", "on_oxygen", "systolic_bp", "heart_rate", "consciousness", "temperature")


def _plain(value: Any) -> Any:
    """A cell as a plain Python value: None for NaN / NaT, numbers and flags unboxed from numpy."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def read_readings(readings: Sequence[Mapping[str, Any]], *, date_order: str | None = None) -> DeviceData:
    """Readings given as records (``{"patient_id", "time", "heart_rate": 88, ...}``), read by the
    generic CSV reader, so a record and a CSV row with the same cells give the same table.

    Keys are the CSV reader's column names (any alias of :data:`healthmon.ingest.vitals_csv.ALIASES`);
    a rejected or flagged record is named ``readings[i]`` (0-based).

    Raises:
        IngestError: no records, a key that names no parameter, or a value that is not a scalar.
    """
    if not readings:
        raise IngestError("at least one reading", "none", "send readings with patient_id, time and parameters")
    known = {alias for aliases in ALIASES.values() for alias in aliases}
    header: list[str] = []
    for record in readings:
        header += [key for key in record if key not in header]
    unknown = [key for key in header if alias_key(key) not in known]
    if unknown:
        raise IngestError("reading fields the vitals reader knows (" + ", ".join(sorted(ALIASES)) + ", or an alias "
                          "such as hr, sbp, temp_f)", ", ".join(map(repr, unknown[:20])),
                          "rename or drop those fields")

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
        raise IngestError("a number, text, true/false or null for each reading field", type(value).__name__,
                          "send one value per field")

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for record in readings:
        writer.writerow([cell(record.get(key)) for key in header])
    data = read_device_files([(READINGS_NAME, buffer.getvalue().encode("utf-8"))], date_order=date_order)
    # A CSV's unused column is reported; a field of a JSON record must not vanish that way (two
    # names for one parameter across the records: the reader takes one and leaves the other).
    unused = data.report.get(READINGS_NAME, {}).get("ignored_columns") or []
    if unused:
        raise IngestError("one field name per parameter across the readings", f"{', '.join(map(repr, unused))} "
                          "not read (another field already gives that parameter)",
                          "use the same name for a parameter in every reading")

    def where(text: str) -> str:  # the CSV's line 2 is the first record
        found = re.fullmatch(rf"{READINGS_NAME} line (\d+)", text)
        return f"{READINGS_NAME}[{int(found.group(1)) - 2}]" if found else text

    return replace(data, rejected=[(where(w), why) for w, why in data.rejected],
                   flagged=[(where(w), parameter, why) for w, parameter, why in data.flagged])


def read_upload(files: Sequence[tuple[str, bytes]], *, patient_id: str | None = None,
                date_order: str | None = None) -> DeviceData:
    """Uploaded device files (name, contents), any format :func:`healthmon.ingest.devices.read_device_files` reads.

    Raises:
        IngestError: no file, an empty one, or one its format's reader refuses.
    """
    empty = [name for name, content in files if not content.strip()]
    if empty:
        raise IngestError("a device file with a header row and readings", f"{', '.join(empty)}: empty",
                          "send the file's contents")
    return read_device_files(list(files), patient_id=patient_id, date_order=date_order)


def reading_report(data: DeviceData) -> dict[str, Any]:
    """What the reader made of the input: its sentences, every rejected row and every flagged
    artefact, counted and listed (nothing read is dropped unsaid)."""
    return {
        "format": data.fmt, "summary": list(data.summary),
        "rejected": {"count": len(data.rejected), "rows": [{"where": w, "why": why} for w, why in data.rejected]},
        "flagged": {"count": len(data.flagged),
                    "rows": [{"where": w, "parameter": p, "why": why} for w, p, why in data.flagged]},
        "ambiguous_dates": bool(data.ambiguous_dates),
    }


def _news2_point(row: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {p: _plain(row.get(f"value_{p}")) for p in _NEWS2_VALUES}
    if values["consciousness"] is not None:
        values["consciousness"] = "ACVPU"[int(values["consciousness"])]
    if values["on_oxygen"] is not None:
        values["on_oxygen"] = bool(values["on_oxygen"])
    points = {p: _plain(row.get(f"points_{p}")) for p in _NEWS2_POINTS}
    return {"time": row["time"], "total": _plain(row["total"]), "band": row["band"],
            "red_flag": _plain(row.get("red_flag")), "complete": _plain(row["complete"]),
            "missing": row["missing"], "caveat": row["caveat"],
            "points": {p: None if v is None else int(v) for p, v in points.items()}, "values": values}


def _alert(alert: Mapping[str, Any], detail: bool) -> dict[str, Any]:
    shown = {k: alert[k] for k in ("time", "severity", "rule_id", "message")}
    if detail:
        shown.update({k: _plain(alert[k]) for k in ("parameter", "kind", "direction", "value", "baseline", "current",
                                                      "change", "unit", "threshold")})
        shown["readings"] = [{"time": t, "value": _plain(v)} for t, v in alert["readings"]]
    return shown


def score_readings(factory: sessionmaker[Session] | None, user: SignedIn | str | None, data: DeviceData, *,
                   patients: Sequence[str] | None = None, setting: str | None = None, spo2_scale: int | None = None,
                   lookback: str = "4h", detail: bool = True, no_record: str = "") -> list[dict[str, Any]]:
    """Each patient's scores from device readings, stored nowhere: the latest NEWS2, the blood-pressure
    category, alerts, the SpO2 scale used and why, and the classifier's summary sentence.

    The shape of ``python -m healthmon vitals``'s lines and of ``POST /api/v1/vitals:score``'s
    patients: one function, so the two cannot drift. Times are ``pandas.Timestamp``; the caller
    serialises them.

    Args:
        factory: the database, for each patient's recorded SpO2 scale; None: none on record.
        user: the signed-in caller (who needs ``vitals.upload``), or the command line's actor name.
        patients: only these (default: every patient, most readings first).
        setting: ``hospital`` or ``home``; None presets it per patient from the readings.
        spo2_scale: 1 or 2; None: each patient's scale on record, else 1.
        lookback: how old a parameter's latest value may be for NEWS2 (a pandas duration: 4h, 90min).
        detail: add every time point's NEWS2 with its points (``news2_over_time``), the readings behind
            each alert and the readings a rule set aside (the API); False: the CLI's line.
        no_record: why the record could not be read, said as the SpO2 scale's basis.

    Raises:
        IngestError: a patient with no readings, a bad setting, scale or lookback.
    """
    if not isinstance(user, str):
        if factory is None and user is not None:
            raise AuthError("the database, to check the signed-in caller's account and role", "none given",
                            "pass the session factory (the command line passes its actor name instead)")
        require(factory, user, "vitals.upload")
    if setting not in (None, "hospital", "home"):
        raise IngestError("setting hospital or home", repr(setting), "leave it out to preset it from the readings")
    if spo2_scale not in (None, 1, 2):
        raise IngestError("SpO2 scale 1 or 2", repr(spo2_scale),
                          "use scale 2 only for a prescribed 88-92 % target, otherwise 1")
    try:
        valid = not str(lookback).strip().replace(".", "", 1).isdigit() and pd.Timedelta(lookback) > pd.Timedelta(0)
    except ValueError:
        valid = False
    if not valid:
        raise IngestError("a positive lookback with a unit such as 4h or 90min", repr(lookback), "add the unit")
    frame = data.frame
    present = frame["patient_id"].astype(str)
    chosen = list(patients) if patients else list(present.value_counts().index)
    missing = sorted(set(chosen) - set(present))
    if missing:
        raise IngestError("patients present in the files", f"no readings for {', '.join(missing)}",
                          "check --patient against the files' patient ids")
    scored = []
    # A stored patient with a prescribed 88-92 % target is scored on it here too: the same file
    # must not give NEWS2 7 in a script and 5 on the dashboard.
    for patient in chosen:
        recorded = recorded_spo2_scale(factory, patient) if factory is not None else None
        scale = spo2_scale or scale_on_record(recorded)
        where = setting or readings_setting(frame, patient)
        result = assess_patient(frame, patient, setting=where, spo2_scale=scale, lookback=lookback,
                                descriptors=data.descriptors.get(patient))
        latest = result.latest_news2
        line: dict[str, Any] = {
            "patient_id": patient, "readings": len(result.vitals),
            "setting": {"setting": where, "basis": "given" if setting else "preset from the readings"},
            "news2": None if latest is None else {k: _plain(latest[k]) for k in ("time", "total", "band", "complete",
                                                                                 "missing", "caveat")},
        }
        if detail:
            line["news2_over_time"] = [_news2_point(row) for row in result.news2.to_dict("records")]
        line.update({
            "bp": None if result.bp is None else {**asdict(result.bp), "esc_esh": result.bp_esc,
                                                  "crisis_readings": list(result.bp_crisis), "note": result.bp_note},
            "alerts": [_alert(a, detail) for a in result.alerts.to_dict("records")],
            "spo2_scale": {"scale": scale, "basis": no_record or spo2_scale_basis(scale, recorded)},
            "checks_not_possible": list(result.skipped), "summary": result.summary,
        })
        if detail:
            line["not_alerted"] = list(result.not_alerted)
            line["crisis_estimates"] = list(result.crisis_estimates)
        scored.append(line)
    return scored


def score_upload(factory: sessionmaker[Session], user: SignedIn, *, files: Sequence[tuple[str, bytes]] | None = None,
                 readings: Sequence[Mapping[str, Any]] | None = None, patient_id: str | None = None,
                 date_order: str | None = None, setting: str | None = None, spo2_scale: int | None = None,
                 lookback: str = "4h") -> dict[str, Any]:
    """Score uploaded device files or JSON readings without storing anything (the API's ``/vitals:score``).

    Returns:
        :func:`reading_report` with ``stored: False`` and ``patients``: :func:`score_readings` in detail.
    """
    require(factory, user, "vitals.upload")
    if (files is None) == (readings is None):
        raise IngestError("either device files or readings", "both" if files is not None else "neither",
                          "send one of them")
    data = read_upload(files, patient_id=patient_id, date_order=date_order) if files is not None else \
        read_readings(readings or [], date_order=date_order)
    return {"stored": False, **reading_report(data),
            "patients": score_readings(factory, user, data, setting=setting, spo2_scale=spo2_scale, lookback=lookback)}
