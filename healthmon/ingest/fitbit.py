"""Fitbit export files (Fitabase "merged" CSVs) as healthmon's long vitals table.

Reads the daily files a clinician is likely to get: ``dailyActivity_merged.csv`` (steps),
``sleepDay_merged.csv`` (minutes asleep) and ``weightLogInfo_merged.csv`` (weight). Each
file's rows are counted in the report; exact duplicate rows (the public sleep export
has three) are reported and counted once; unreadable rows are rejected with their line.
Missing files are simply absent parameters.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from healthmon.errors import IngestError
from healthmon.ingest.decode import decode_text, encoding_note
from healthmon.ingest.vitals_csv import VitalsData, VitalsReport
from healthmon.vitals.parameters import COLUMNS, PLAUSIBLE

# file name -> (time column, value column, parameter)
FILES = {
    "dailyActivity_merged.csv": ("ActivityDate", "TotalSteps", "steps"),
    "sleepDay_merged.csv": ("SleepDay", "TotalMinutesAsleep", "sleep_minutes"),
    "weightLogInfo_merged.csv": ("Date", "WeightKg", "weight"),
}


MINUTES_PER_DAY = 1440


def read_fitbit(folder: str | Path) -> VitalsData:
    """Every known Fitbit file in ``folder``; see the module docstring."""
    folder = Path(folder)
    present = [name for name in FILES if (folder / name).is_file()]
    if not present:
        raise IngestError(f"Fitbit export files ({', '.join(FILES)})", f"none in {folder}",
                          "point at the folder holding the *_merged.csv files")
    return read_fitbit_files({name: (folder / name).read_bytes() for name in present}, source=str(folder))


def fitbit_file_name(name: str) -> str | None:
    """The known export file ``name`` is (uploads may be renamed ``dailyActivity_merged (1).csv``)."""
    stem = Path(name).name.lower()
    return next((known for known in FILES if stem.startswith(known.removesuffix(".csv").lower())), None)


def _cells(text: str, name: str) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """The file's rows as strings, indexed so that index + 2 is the line, and the rows whose
    cell count differs from the header's, rejected by line (pandas would silently drop their
    extra cells, or turn the first column into the index)."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise IngestError(f"a CSV file {name} with a header row", "an empty file", "use the unedited Fitbit export")
    header, kept, index, ragged = rows[0], [], [], []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            ragged.append((line, f"{name}: {len(row)} cells where the header has {len(header)}"))
            continue
        kept.append(row)
        index.append(line - 2)
    return pd.DataFrame(kept, columns=header, index=index, dtype=str), ragged


def read_fitbit_files(files: dict[str, bytes], *, source: str = "upload") -> VitalsData:
    """Fitbit export files given as {file name: contents}, e.g. from an upload form."""
    known = {fitbit_file_name(name): data for name, data in files.items()}
    if None in known or not known:
        raise IngestError(f"Fitbit export files ({', '.join(FILES)})", ", ".join(files) or "no files",
                          "upload the unedited *_merged.csv files")
    present = [name for name in FILES if name in known]
    report = VitalsReport(source=source)
    parts = []
    for name in present:
        time_column, value_column, parameter = FILES[name]
        text, encoding = decode_text(known[name], name)
        said = encoding_note(encoding, text)
        if said:
            report.conversions.append(f"{name}: {said}")
        raw, ragged = _cells(text, name)
        report.rows_read += len(ragged)
        report.rows_rejected += len(ragged)
        report.rejected.extend(ragged)
        missing = {"Id", time_column, value_column} - set(raw.columns)
        if missing:
            raise IngestError(f"columns Id, {time_column}, {value_column} in {name}", f"{', '.join(raw.columns)}",
                              "use the unedited Fitbit export")
        report.rows_read += len(raw)
        duplicated = raw.duplicated(keep="first")
        if duplicated.any():
            report.conversions.append(f"{name}: {int(duplicated.sum())} exact duplicate row(s) counted once")
        raw = raw[~duplicated]
        times = pd.to_datetime(raw[time_column], errors="coerce", format="mixed", utc=True)
        values = pd.to_numeric(raw[value_column], errors="coerce")
        no_id = raw["Id"].str.strip().eq("")
        bad = times.isna() | values.isna() | no_id
        for index in raw.index[bad]:
            report.rows_rejected += 1
            report.rejected.append((int(index) + 2, f"{name}: blank Id (whose day this is is unknown)"
                                    if no_id[index] else f"{name}: unreadable {time_column} or {value_column}"))
        low, high = PLAUSIBLE[parameter]
        part = pd.DataFrame({"patient_id": raw["Id"][~bad], "time": times[~bad], "parameter": parameter,
                             "value": values[~bad].astype(float), "source": f"fitbit:{name}"})
        part["artefact"] = ~part["value"].between(low, high)
        if parameter == "steps" and "SedentaryMinutes" in raw.columns:
            # 0 steps and 1,440 sedentary minutes is a day the tracker lay unworn, not a day in bed:
            # kept and flagged, so a summary's median steps is not pulled down by it.
            sedentary = pd.to_numeric(raw["SedentaryMinutes"][~bad], errors="coerce")
            unworn = part["value"].eq(0) & sedentary.ge(MINUTES_PER_DAY)
            part["artefact"] |= unworn
            if unworn.any():
                report.conversions.append(f"{name}: {int(unworn.sum())} day(s) of 0 steps and {MINUTES_PER_DAY:,} "
                                          "sedentary minutes flagged as not worn")
        report.values_read += len(part)
        report.values_flagged += int(part["artefact"].sum())
        report.columns[parameter] = f"{name}:{value_column}"
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)[COLUMNS]
    frame = frame.sort_values(["patient_id", "time", "parameter"], kind="stable").reset_index(drop=True)
    return VitalsData(frame, report)
