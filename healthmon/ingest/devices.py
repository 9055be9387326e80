"""One entry point for device files, whatever their format: the dashboard's upload and the CLI.

The format is recognised from the contents (and the file name for Fitbit exports), never
from the extension alone, and the caller gets the long vitals table, a report in plain
words, and, for FHIR, the notes and conditions that came with the readings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from healthmon.errors import IngestError
from healthmon.ingest.decode import decode_text
from healthmon.ingest.fhir import read_fhir_bytes
from healthmon.ingest.fitbit import FILES as FITBIT_FILES
from healthmon.ingest.fitbit import fitbit_file_name, read_fitbit_files
from healthmon.ingest.physionet import APPROXIMATIONS, read_physionet_record
from healthmon.ingest.vitals_csv import VitalsReport, read_vitals_csv
from healthmon.types import IngestResult
from healthmon.vitals.parameters import COLUMNS

FORMATS = {"csv": "generic vitals CSV", "physionet": "PhysioNet 2012 record (Time,Parameter,Value)",
           "fitbit": "Fitbit export (*_merged.csv)", "fhir": "FHIR R4 Bundle or bulk NDJSON"}


@dataclass
class DeviceData:
    """What a set of device files held, whatever the format."""

    frame: pd.DataFrame  # healthmon.vitals.parameters.COLUMNS
    fmt: str
    summary: list[str]  # the report in sentences, for the page and the CLI
    rejected: list[tuple[str, str]]  # (where, why)
    flagged: list[tuple[str, str, str]]  # (where, parameter, why)
    report: dict  # the format's own report, stored with the upload
    notes: IngestResult | None = None
    conditions: pd.DataFrame = field(default_factory=pd.DataFrame)
    descriptors: dict[str, dict[str, float]] = field(default_factory=dict)  # PhysioNet: per record
    needs_patient_id: bool = False  # a CSV without a patient column: the file name stands in, not storable
    ambiguous_dates: bool = False  # a CSV's 03/04/2026 read in the caller's (or the default) order


def detect_format(name: str, head: bytes) -> str:
    """``csv``, ``physionet``, ``fitbit`` or ``fhir`` for one file."""
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start in (b"{", b"["):
        return "fhir"
    # Fitbit's other exports (heartrate_seconds_merged.csv, ...) are refused by its reader with the
    # list it reads; a generic CSV that happens to be called vitals_merged.csv is not one of them.
    if fitbit_file_name(name) or ("_merged" in name.lower() and head.lstrip(b"\xef\xbb\xbf").startswith(b"Id,")):
        return "fitbit"
    if head.lstrip(b"\xef\xbb\xbf").startswith(b"Time,Parameter,Value"):
        return "physionet"
    return "csv"


def read_device_files(files: dict[str, bytes] | Sequence[tuple[str, bytes]], *,
                      patient_id: str | None = None, date_order: str | None = None) -> DeviceData:
    """Read uploaded files ({name: contents} or (name, contents) pairs) of one format into one table.

    Args:
        patient_id: the patient of a generic CSV that has no patient column. Without it the
            rows carry the file name and ``DeviceData.needs_patient_id`` is set: such
            readings can be scored but must not be stored.
        date_order: a generic CSV's numeric dates where the file does not show its order
            ("day/month" or "month/day"; see ``read_vitals_csv``).

    Raises:
        IngestError: no files, two files of the same name, files of different formats, or a
            file the format's reader refuses.
    """
    pairs = list(files.items()) if isinstance(files, dict) else list(files)
    if not pairs:
        raise IngestError("at least one device file", "none", "choose a CSV, Fitbit, PhysioNet or FHIR file")
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise IngestError("files with different names", f"{', '.join(repeated)} more than once",
                          "rename the files (each is read, none may hide another)")
    files = dict(pairs)
    kinds = {name: detect_format(name, data[:64]) for name, data in files.items()}
    formats = set(kinds.values())
    if len(formats) > 1:
        found = "; ".join(f"{name}: {FORMATS[kind]}" for name, kind in kinds.items())
        raise IngestError("files of one format per upload", found, "upload each format on its own")
    fmt = formats.pop()
    if fmt == "csv":
        return _csv(files, patient_id, date_order)
    return {"physionet": _physionet, "fitbit": _fitbit, "fhir": _fhir}[fmt](files)


def _vitals_report_summary(report: VitalsReport, what: str) -> list[str]:
    lines = [f"Read {report.rows_read} row(s) of {what}: {report.values_read} value(s), {report.values_flagged} "
             f"flagged as artefacts (kept, not scored), {report.rows_rejected} row(s) rejected."]
    if report.columns:
        lines.append("Columns used: " + ", ".join(f"{k} from '{v}'" for k, v in report.columns.items()) + ".")
    if report.ignored_columns:
        lines.append("Columns not used: " + ", ".join(report.ignored_columns) + ".")
    return lines + list(report.conversions)


def _csv(files: dict[str, bytes], patient_id: str | None, date_order: str | None) -> DeviceData:
    frames, summary, rejected, flagged, reports, unnamed, ambiguous = [], [], [], [], {}, [], False
    for name, data in files.items():
        read = read_vitals_csv(data, name, patient_id=patient_id, date_order=date_order)
        ambiguous = ambiguous or read.report.ambiguous_dates
        if read.report.patient_from_file_name:
            unnamed.append(name)
        frames.append(read.frame)
        summary += _vitals_report_summary(read.report, name)
        rejected += [(f"{name} line {line}", why) for line, why in read.report.rejected]
        flagged += [(f"{name} line {line}", parameter, why) for line, parameter, why in read.report.flagged]
        reports[name] = asdict(read.report)
    if unnamed:
        summary.append(f"No patient column in {', '.join(unnamed)}: give the patient id to store these readings.")
    return DeviceData(pd.concat(frames, ignore_index=True)[COLUMNS], "csv", summary, rejected, flagged, reports,
                      needs_patient_id=bool(unnamed), ambiguous_dates=ambiguous)


def _fitbit(files: dict[str, bytes]) -> DeviceData:
    known = {name: data for name, data in files.items() if fitbit_file_name(name)}
    kinds = [fitbit_file_name(name) for name in known]
    clashing = sorted(name for name in known if kinds.count(fitbit_file_name(name)) > 1)
    if clashing:
        raise IngestError("one file of each Fitbit export kind per upload", f"{', '.join(clashing)} are the same kind",
                          "upload one export at a time, or merge the files first")
    unread = sorted(set(files) - set(known))
    if not known:
        raise IngestError(f"one of the Fitbit files {', '.join(FITBIT_FILES)}", ", ".join(unread),
                          "add the daily activity, sleep or weight export")
    read = read_fitbit_files(known, source=", ".join(known))
    summary = _vitals_report_summary(read.report, "Fitbit export")
    if unread:
        summary.append(f"Not read (healthmon reads {', '.join(FITBIT_FILES)}): {', '.join(unread)}.")
    return DeviceData(read.frame, "fitbit", summary, [(f"line {line}", why) for line, why in read.report.rejected],
                      _flagged_rows(read.frame), asdict(read.report))


def _physionet(files: dict[str, bytes]) -> DeviceData:
    frames, rejected, descriptors, beside_arterial = [], [], {}, 0
    for name, data in files.items():
        stay = read_physionet_record(decode_text(data, name)[0], name)
        beside_arterial += stay.cuff_beside_arterial
        frames.append(stay.frame)
        descriptors[stay.record_id] = stay.descriptors
        rejected += [(f"{name} line {line}", why) for line, why in stay.rejected]
    frame = pd.concat(frames, ignore_index=True)[COLUMNS]
    summary = [f"Read {len(files)} ICU record(s): {len(frame)} value(s), {int(frame['artefact'].sum())} flagged as "
               f"artefacts, {len(rejected)} line(s) rejected.", "Approximations: " + "; ".join(APPROXIMATIONS) + "."]
    if beside_arterial:
        summary.append(f"{beside_arterial} cuff pressure(s) at a minute the arterial line also read: kept as lab "
                       "values, the arterial pressure scored.")
    return DeviceData(frame, "physionet", summary, rejected, _flagged_rows(frame),
                      {"records": len(files), "rejected": rejected, "descriptors": descriptors},
                      descriptors=descriptors)


def _flagged_rows(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Artefacts of readers that report only a count: where (source, patient, time) and the value."""
    flagged = frame[frame["artefact"]]
    return [(f"{source} {patient} {moment:%Y-%m-%d %H:%M}", parameter, f"{value:g} is implausible")
            for patient, moment, parameter, value, source in
            flagged[["patient_id", "time", "parameter", "value", "source"]].itertuples(index=False, name=None)]


def _fhir(files: dict[str, bytes]) -> DeviceData:
    read = read_fhir_bytes(files)
    report = read.report
    types = ", ".join(f"{n} {kind}" for kind, n in sorted(report.resources_read.items()))
    summary = [f"Read {sum(report.resources_read.values())} FHIR resource(s) ({types}); {report.resources_rejected} "
               f"rejected. {report.values_read} Observation value(s) read, {report.values_flagged} flagged as "
               "artefacts.",
               f"{report.patients} patient(s), {report.conditions} condition(s), {len(read.notes.notes)} note(s) "
               f"from DocumentReference" + (f", {len(report.attachments_rejected)} attachment(s) not readable as a note"
                                            if report.attachments_rejected else "") + "."]
    summary += list(report.conversions) + list(report.warnings)
    # Attachments that are not text are listed beside the refused resources, not only in the notes' report.
    return DeviceData(read.frame, "fhir", summary, list(report.rejected) + list(report.attachments_rejected),
                      list(report.flagged),
                      asdict(report), notes=read.notes, conditions=read.conditions)


def read_device_paths(paths: list[str | Path], *, patient_id: str | None = None,
                      date_order: str | None = None) -> DeviceData:
    """The same for files on disk (the CLI); a folder means every file in it."""
    files: list[tuple[str, bytes]] = []
    for path in map(Path, paths):
        members = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".txt", ".json",
                                                                                         ".ndjson")) \
            if path.is_dir() else [path]
        for member in members:
            if path.is_dir() and member.name == "log.ndjson":
                continue  # a bulk export's own log (Bulk Data Access spec), not FHIR resources
            if not member.is_file():
                raise IngestError("an existing file or folder", str(member), "check the path")
            files.append((member.name, member.read_bytes()))
    return read_device_files(files, patient_id=patient_id, date_order=date_order)
