"""Device vitals from a generic wide CSV: columns found by alias, units converted, artefacts flagged.

Output is one long table (:data:`COLUMNS`): one row per patient, time and parameter, with
the value in healthmon's canonical unit and an ``artefact`` flag. Flagged values are kept
(so nothing read is lost and the report can point at them) but never scored. The report
says what was read, converted, flagged and rejected; a row whose time cannot be read (or
whose patient cell is blank) is rejected with its line number, a blank value cell is simply a
parameter not measured.

Dates written with slashes, dots or dashes (03/04/2026) are read in one order for the whole
file: the order the file itself shows (a first number over 12 is a day), else day/month (this
tool is built around a UK score) unless the caller says month/day, and the report says which;
such a file is stored only once a person has said the order (``VitalsReport.ambiguous_dates``).
A time of day alone (08:00) needs a date column beside it; it is never given today's date, and
a time that reads as before 1990 or after tomorrow is rejected as misread.

Bytes are decoded by :func:`healthmon.ingest.decode.decode_text` (the report says a
non-UTF-8 encoding) and columns found by :func:`healthmon.ingest.columns.map_columns` with
:data:`ALIASES`; what each parameter means (units, plausible ranges) is
:mod:`healthmon.vitals.parameters`.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

import pandas as pd

from healthmon.errors import IngestError, PatientUnknownError
from healthmon.ingest.columns import alias_key, map_columns, missing_column_error
from healthmon.ingest.decode import decode_text, encoding_note
from healthmon.vitals.parameters import COLUMNS, COUNTS, LB_TO_KG, MMOL_TO_MG_DL, UNITS, acvpu_letter, implausible

# Canonical parameter (or "time", "date", "patient_id", "blood_pressure") -> the column names
# (as alias_key spells them) that mean it, best first.
ALIASES = {
    # Names that promise a date and a time come before "time", which is often a time of day.
    "time": ["timestamp", "datetime", "date_time", "measured_at", "charttime", "recorded_at", "time", "date",
             "activitydate"],
    # A date in its own column beside a time of day ("date,time,pulse"): the two are joined.
    "date": ["date", "activitydate", "measurement_date", "day"],
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
YES = {"1", "true", "yes", "y", "o2", "oxygen"}
NO = {"0", "false", "no", "n", "air", "room air", "ra"}


@dataclass
class VitalsReport:
    """What a device reader read, converted, flagged and rejected, line by line."""

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
    # Dates such as 03/04/2026 with nothing in the file to tell day/month from month/day:
    # read in the caller's order, and a person should confirm it.
    ambiguous_dates: bool = False
    # No patient column and no patient id given: the rows carry the file name as a stand-in,
    # which must not be stored (two people's "export.csv" would merge).
    patient_from_file_name: bool = False


@dataclass
class VitalsData:
    """The long vitals table (:data:`~healthmon.vitals.parameters.COLUMNS`) and its report."""

    frame: pd.DataFrame
    report: VitalsReport


DATE_ORDERS = ("day/month", "month/day")
_NUMERIC_DATE = re.compile(r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})(?!\d)(.*)$", re.DOTALL)
# A time of day with no date: 08:00, 8:00:15.5, T08:00, 08:00Z, 08:00+01:00, 8 PM, 8:30am.
_TIME_OF_DAY = re.compile(r"^\s*(?:T?\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:[ap]\.?m\.?)?|\d{1,2}\s*[ap]\.?m\.?)"
                          r"\s*(?:Z|UTC|GMT|[+-]\d{2}:?\d{2})?\s*$", re.IGNORECASE)
_SPREADSHEET_SERIAL = re.compile(r"^\s*\d{5}(?:\.\d+)?\s*$")
# A reading dated before this, or after tomorrow, is a misread time (a year 0001 or 0800 from a
# bare time), never a measurement.
EARLIEST_READING = pd.Timestamp("1990-01-01", tz="UTC")


_ZONE = r"(?:Z|[+-]\d{2}:?\d{2}|UTC|GMT)\s*$"  # a time that says its offset


def _times(cells: pd.Series, date_order: str | None, report: VitalsReport) -> pd.Series:
    """Timestamps (UTC) for the time cells; NaT where a cell cannot be read. Numeric dates
    (03/04/2026, 13.03.26) are rewritten as ISO in one order for the whole file, because a
    parser that guesses per cell reads 12/03 as 3 December and 13/03 as 13 March side by side."""
    parts = cells.str.extract(_NUMERIC_DATE)
    numeric = parts[0].notna()
    if numeric.any():
        first, second = parts.loc[numeric, 0].astype(int), parts.loc[numeric, 1].astype(int)
        day_first_shown, month_first_shown = first.gt(12).any(), second.gt(12).any()
        if day_first_shown and month_first_shown:
            # The cells are indexed by their line in the file (see _table).
            day_line, month_line = int(first.gt(12).idxmax()), int(second.gt(12).idxmax())
            raise IngestError("dates in one order (day/month or month/day) throughout the file",
                              f"line {day_line} {cells.loc[day_line]!r} (day first) and line {month_line} "
                              f"{cells.loc[month_line]!r} (month first)",
                              "write the dates as YYYY-MM-DD, or correct the rows in the other order")
        if day_first_shown or month_first_shown:
            order = "day/month" if day_first_shown else "month/day"
            line = int((first if day_first_shown else second).gt(12).idxmax())
            report.conversions.append(f"dates read as {order}, as line {line} ({cells.loc[line].strip()!r}) "
                                      "shows")
        else:
            order = date_order or "day/month"
            report.ambiguous_dates = True
            example = cells[numeric].iloc[0].strip()
            report.conversions.append(f"dates such as {example!r} could be day/month or month/day: read as {order}"
                                      + ("" if date_order else " (the default)") + "; confirm the order")
        day, month = (first, second) if order == "day/month" else (second, first)
        year = parts.loc[numeric, 2].map(lambda y: y if len(y) == 4 else f"20{y}")
        iso = (year + "-" + month.map("{:02d}".format) + "-" + day.map("{:02d}".format) + parts.loc[numeric, 3])
        cells = cells.where(~numeric, iso)
    times = pd.to_datetime(cells, errors="coerce", utc=True, format="mixed")
    # Said, not silent: a device's local 08:00 read as 08:00 UTC is an hour or more off, and
    # beside readings that give their offset it can even change their order.
    zoned = cells.str.contains(_ZONE, regex=True, na=False)
    naive = int((times.notna() & ~zoned).sum())
    if naive:
        report.conversions.append(f"{naive} time(s) without a time zone read as UTC"
                                  + (f"; {int((times.notna() & zoned).sum())} other(s) give their own: check they agree"
                                     if (times.notna() & zoned).any() else ""))
    return times


def _time_column(raw: pd.DataFrame, mapping: dict[str, str], date_order: str | None,
                 report: VitalsReport) -> tuple[pd.Series, pd.Series]:
    """Each row's time (UTC) and, where it cannot be trusted, why ("" where it can). A time of
    day is joined to the date column's cell on its row; one without a date is rejected, never
    given today's date."""
    time_column, date_column = mapping["time"], mapping.get("date")
    cells = raw[time_column].str.strip()
    time_only = cells.str.match(_TIME_OF_DAY)
    if date_column is None or date_column == time_column or not time_only.any():
        mapping.pop("date", None)  # the one column is the time, or the time column carries its own date
        date_column = None
    problems = pd.Series("", index=raw.index, dtype=object)
    if date_column is not None:
        dates = raw[date_column].str.strip()
        joined = time_only & dates.ne("")
        problems[time_only & dates.eq("")] = f"no date in column '{date_column}' for this time"
        cells = cells.where(~joined, dates + " " + cells)
        time_only = time_only & ~joined
    else:
        joined = pd.Series(False, index=raw.index)
        problems[time_only] = f"time of day with no date: add a date column, or write the date in '{time_column}'"
    problems[cells.eq("") & problems.eq("")] = f"blank time in column '{time_column}'"
    times = _times(cells.where(problems.eq(""), ""), date_order, report)
    latest = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1)
    failed = problems.eq("") & (times.isna() | times.lt(EARLIEST_READING) | times.gt(latest))
    for index in raw.index[failed]:
        moment, cell = times.loc[index], cells.loc[index]
        where = f" (columns '{date_column}' + '{time_column}')" if joined.loc[index] else ""
        if pd.isna(moment):
            hint = (": a spreadsheet's serial day number; format the column as date and time before exporting"
                    if _SPREADSHEET_SERIAL.match(cell) else "")
            problems.loc[index] = f"unreadable time {cell!r}{where}{hint}"
        else:
            # By hand, not strftime: a time read as year -5 has no strftime rendering.
            shown = f"{moment.year}-{moment.month:02d}-{moment.day:02d} {moment.hour:02d}:{moment.minute:02d}"
            problems.loc[index] = (f"time {cell!r}{where} reads as {shown}, not a date between 1990 "
                                   "and tomorrow: write the full date and time")
    return times, problems


def read_vitals_csv(data: bytes | str, name: str = "vitals.csv", *, patient_id: str | None = None,
                    date_order: str | None = None) -> VitalsData:
    """Read a wide vitals CSV (a time column plus any vitals columns); see the module docstring.

    Args:
        patient_id: used when the file has no patient column (one patient's device export).
        date_order: "day/month" or "month/day" for numeric dates the file leaves ambiguous
            (none: day/month, reported as ambiguous). A file that shows its order keeps it.
    """
    if date_order is not None and date_order not in DATE_ORDERS:
        raise IngestError("a date order of 'day/month' or 'month/day'", repr(date_order), "pass one of those")
    report = VitalsReport(source=name)
    if isinstance(data, bytes):
        # Some bedside loggers pad a file to a block size with NUL bytes: padding, not binary data.
        padded = len(data) - len(data.rstrip(b"\x00"))
        if padded and not data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16's own NULs are text
            data = data[:-padded]
            report.conversions.append(f"{padded:,} NUL byte(s) of padding at the end of the file ignored")
        text, encoding = decode_text(data, name)
        said = encoding_note(encoding, text)
        if said:
            report.conversions.append(said)
    else:
        text = data
    # Spreadsheets in locales with a decimal comma write ";", and "Unicode text" exports use
    # tabs: the header row, which holds no free text, says which.
    first_line = text.lstrip("\ufeff").split("\n", 1)[0]
    separator = max((",", ";", "\t"), key=first_line.count)  # a tie (a one-column header) keeps ","
    if separator != ",":
        report.conversions.append(f"columns separated by {'tabs' if separator == chr(9) else repr(separator)}")
    raw, malformed = _table(text.lstrip("\ufeff"), separator, name, report)
    header = list(raw.columns)
    mapping = {role: header[index] for role, index in map_columns(header, ALIASES, name).items()}
    if alias_key(mapping.get("patient_id", "")) == "id" and _counts_rows(raw[mapping["patient_id"]]):
        # "id" is a Fitbit export's user, but in many exports a row number, and in a ward list one
        # row per patient: no guess, since either wrong reading mixes or splits people's readings.
        if not patient_id:
            raise PatientUnknownError(
                "a patient column", f"column '{mapping['patient_id']}' whose values count the rows (1, 2, 3 ... on "
                f"{len(raw)} rows): a row number, or one row per patient",
                "rename it patient_id if each row is a patient; if the file is one patient's, give the patient id "
                "(--patient-id, or the Vitals page's box) and 'id' is left out")
        report.conversions.append(f"column '{mapping.pop('patient_id')}' not read as the patient: its values "
                                  f"count the rows (1, 2, 3 ...), and the readings are {patient_id}'s as given")
    report.rows_read, report.columns = len(raw), mapping
    if "time" not in mapping:
        raise missing_column_error("a time column (timestamp, time, datetime, date ...)", header, name,
                                   "add or rename the time column", sentence_hint=False)
    measured = [c for c in mapping if c in UNITS or c == "blood_pressure"]
    if not measured:
        raise missing_column_error("at least one vitals column (heart rate, blood pressure, SpO2, ...)", header, name,
                                   "rename the columns or see docs/vitals.md for the aliases", sentence_hint=False)
    times, problems = _time_column(raw, mapping, date_order, report)
    problems.update(malformed)
    report.ignored_columns = [c for c in raw.columns if c not in mapping.values()]
    patients = raw[mapping["patient_id"]] if "patient_id" in mapping else pd.Series([patient_id or name] * len(raw))
    report.patient_from_file_name = "patient_id" not in mapping and not patient_id
    # Each unit decided once per column, from its name or its values (not once per cell).
    units = {canonical: _unit(canonical, mapping[canonical], raw[mapping[canonical]], report) for canonical in measured}
    for canonical in (c for c in measured if c in COUNTS):
        grouped = raw[mapping[canonical]].str.strip().str.fullmatch(_THOUSANDS)
        if grouped.any():
            example = raw[mapping[canonical]][grouped].iloc[0].strip()
            words = canonical.replace("_", " ")
            report.conversions.append(f"{int(grouped.sum())} {words} value(s) such as {example!r} read with a "
                                      "thousands separator")
    rows = []
    # Plain lists, not pandas lookups per cell: those were most of the time for a month of minute rows.
    cells = {canonical: raw[mapping[canonical]].tolist() for canonical in measured}
    why_rejected, patient_cells, moments = problems.tolist(), patients.tolist(), list(times)
    for index, line in enumerate(raw.index):  # the index is each row's line in the file
        if why_rejected[index]:
            report.rows_rejected += 1
            report.rejected.append((line, why_rejected[index]))
            continue
        patient = str(patient_cells[index]).strip()
        if not patient:
            report.rows_rejected += 1
            report.rejected.append((line, "blank patient id: whose readings these are is unknown"))
            continue
        for canonical in measured:
            cell = cells[canonical][index].strip()
            if not cell:
                continue
            for parameter, value, problem in _parse(canonical, cell, units[canonical]):
                report.values_read += 1
                artefact = problem is not None or implausible(parameter, value)
                if artefact:
                    report.values_flagged += 1
                    report.flagged.append((line, parameter, problem or f"{value:g} {UNITS[parameter]} is implausible"))
                rows.append((patient, moments[index], parameter,
                             value if problem is None else float("nan"), artefact, name))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame = frame.sort_values(["patient_id", "time", "parameter"], kind="stable").reset_index(drop=True)
    return VitalsData(frame, report)


def _table(text: str, separator: str, name: str, report: VitalsReport) -> tuple[pd.DataFrame, pd.Series]:
    """The file's cells as text, indexed by each row's line in the file (blank lines and quoted
    line breaks counted, so a rejected row's line is the one an editor shows), and why each row
    whose fields do not line up with the header cannot be read.

    pandas would read a row with one field too many by making its first cell the row index,
    shifting every value into the wrong column ("36,5" in a comma file, a stray separator);
    told not to, it drops the extra field, turning 36,5 into 36. So the fields are counted here:
    a separator at the end of every row (empty extra fields) is harmless and said; any other
    row with more fields than the header is rejected with the reason. "Every row": in a file
    whose other rows line up, "36,5," (a decimal comma, then an empty last cell) also ends in
    an empty field, and is one of the rows that does not line up.
    """
    # newline="": the reader splits rows itself (CR-only files from old spreadsheets included) and
    # keeps a quoted line break inside its cell; strict: an unclosed quote is an error, not a cell
    # that swallows every row after it.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, strict=True)
    header: list[str] | None = None
    rows, lines, malformed = [], [], {}
    trailing = []
    try:
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue  # a blank line
            if header is None:
                header = record
                continue
            line = reader.line_num
            extra = record[len(header):]
            if any(cell.strip() for cell in extra):
                malformed[line] = _misaligned(len(record), len(header))
            elif extra:
                trailing.append((line, len(record)))
            rows.append((record + [""] * (len(header) - len(record)))[: len(header)])
            lines.append(line)
    except csv.Error as exc:
        raise IngestError("a comma-separated file with a header row", f"{name} line {reader.line_num}: {exc}",
                          "export the device data as CSV (one row per time point)") from exc
    if header is None:
        raise IngestError("a comma-separated file with a header row", f"{name}: no header row (the file is empty)",
                          "export the device data as CSV (one row per time point)")
    if trailing and len(trailing) == len(rows):
        report.conversions.append(f"{len(trailing)} row(s) end with an extra separator: the empty last field ignored")
    else:
        malformed.update({line: _misaligned(fields, len(header)) for line, fields in trailing})
    seen: dict[str, int] = {}
    columns = []
    for column in header:  # as pandas names repeated headers: hr, hr.1
        count = seen.get(column, 0)
        seen[column] = count + 1
        columns.append(column if count == 0 else f"{column}.{count}")
    raw = pd.DataFrame(rows, columns=columns, index=pd.Index(lines, dtype="int64"), dtype=object)
    return raw, pd.Series(malformed, dtype=object)


def _counts_rows(cells: pd.Series) -> bool:
    """Whether a column's values are whole numbers going up or down by one from row to row."""
    numbers = pd.to_numeric(cells.str.strip(), errors="coerce")
    steps = numbers.diff().iloc[1:]
    return (len(cells) > 1 and numbers.notna().all() and bool((numbers % 1 == 0).all())
            and bool((steps == 1).all() or (steps == -1).all()))


def _misaligned(fields: int, columns: int) -> str:
    return (f"{fields} fields where the header has {columns}: a decimal comma in a comma-separated file, or a "
            "separator inside a cell; quote that cell or separate the columns with ';'")


def _median(values: pd.Series) -> float | None:
    numbers = pd.to_numeric(values.str.replace(",", ".", regex=False), errors="coerce").dropna()
    return float(numbers.median()) if len(numbers) else None


GLUCOSE_EITHER_UNIT = (20.0, 40.0)  # a column median here could be mg/dL or mmol/L


def _unit(canonical: str, column: str, values: pd.Series, report: VitalsReport) -> tuple[float, float]:
    """(scale, offset) to the canonical unit for one column, said in the report where it is a
    conversion or a guess (a column whose name gives no unit)."""
    norm = alias_key(column)
    if canonical == "temperature" and not norm.endswith(("_c", "celsius")):
        named = norm.endswith(("_f", "fahrenheit"))
        median = None if named else _median(values)
        if named or (median is not None and median > 50):  # no living patient is 50 °C; 95-105 °F is normal
            why = "" if named else f" (no unit in its name; median {median:g})"
            report.conversions.append(f"temperature '{column}' read as °F{why}, converted to °C")
            return 5 / 9, -160 / 9
    if canonical == "glucose":
        median = None if "mmol" in norm or "mg" in norm else _median(values)
        if "mmol" in norm:
            report.conversions.append(f"glucose '{column}' read as mmol/L, converted to mg/dL (x {MMOL_TO_MG_DL})")
            return MMOL_TO_MG_DL, 0.0
        if median is not None:
            # A median below 20 can only be mmol/L (20 mg/dL is the floor of a meter's range) and
            # one of 40 or more only mg/dL (40 mmol/L is 720 mg/dL); in between, a single 30 is a
            # severe hypo in mg/dL and 540 mg/dL in mmol/L, so no guess is made.
            if GLUCOSE_EITHER_UNIT[0] <= median < GLUCOSE_EITHER_UNIT[1]:
                raise IngestError("a glucose column whose unit its name or values show",
                                  f"'{column}' with no unit in its name and a median of {median:g}, which reads as "
                                  f"{median:g} mg/dL (severe hypoglycaemia) or {median * MMOL_TO_MG_DL:.0f} mg/dL "
                                  "(from mmol/L)", "rename the column glucose_mgdl or glucose_mmol")
            unit = "mmol/L" if median < GLUCOSE_EITHER_UNIT[0] else "mg/dL"
            report.conversions.append(
                f"glucose '{column}' has no unit in its name: read as {unit} (median {median:g})"
                + (f", converted to mg/dL (x {MMOL_TO_MG_DL})" if unit == "mmol/L" else "")
                + "; name it glucose_mgdl or glucose_mmol to say which")
            return (MMOL_TO_MG_DL, 0.0) if unit == "mmol/L" else (1.0, 0.0)
    if canonical == "weight":
        if norm.endswith(("lb", "lbs", "pounds")):
            report.conversions.append(f"weight '{column}' read as lb, converted to kg")
            return LB_TO_KG, 0.0
        if not norm.endswith(("kg", "kilograms")):
            report.conversions.append(f"weight '{column}' has no unit in its name: read as kg; name it weight_lb "
                                      "for pounds")
    return 1.0, 0.0


# A count written with a thousands separator (see COUNTS).
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+|\d{1,3}(?:\.\d{3})+")


def _parse(canonical: str, cell: str, unit: tuple[float, float]):  # noqa: ANN202 - yields (parameter, value, problem)
    if canonical == "blood_pressure":
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*", cell)
        if match is None:
            yield "systolic_bp", float("nan"), f"blood pressure {cell!r} is not systolic/diastolic"
            return
        yield "systolic_bp", float(match.group(1)), None
        yield "diastolic_bp", float(match.group(2)), None
        return
    if canonical == "consciousness":
        letter = acvpu_letter(cell)
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
    if canonical in COUNTS and _THOUSANDS.fullmatch(cell.strip()):
        yield canonical, float(re.sub(r"[,.]", "", cell)), None  # 12,345 steps: a count has no decimals
        return
    try:
        value = float(cell.replace(",", "."))
    except ValueError:
        yield canonical, float("nan"), f"{canonical.replace('_', ' ')} {cell!r} is not a number"
        return
    scale, offset = unit
    if (scale, offset) != (1.0, 0.0):
        value = round(value * scale + offset, 2 if canonical != "glucose" else 1)
    yield canonical, value, None
