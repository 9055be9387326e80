"""PhysioNet/CinC Challenge 2012 ICU records (``Time,Parameter,Value``) as the long vitals table.

Each record is one ICU stay; ``Time`` is hours:minutes since ICU admission, so times are
placed on a fixed reference day (:data:`ADMISSION`) and stay comparable across records.
Descriptors (Age, Gender, Height, ICUType, Weight at 00:00) go to the stay's
``descriptors``; vitals map to healthmon's parameters; the labs and anything else are
kept under their own names (``lab:BUN``) so nothing read is lost. ``-1`` means missing in
this data set and is skipped.

Two mappings are approximations, and both are reported:
* ``SaO2`` is arterial saturation from a blood gas, used in place of pulse-oximetry SpO2.
* GCS is mapped to ACVPU as 15 → Alert, 13-14 → new Confusion, 9-12 → Voice, 4-8 → Pain,
  3 → Unresponsive (a common crosswalk, not part of NEWS2 itself).
FiO2 above 0.21 and mechanical ventilation both mean supplemental oxygen; GCS, FiO2 and MechVent
are also kept as they were read (``lab:GCS`` ...), since the mappings lose detail.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pandas as pd

from healthmon.errors import IngestError
from healthmon.vitals.parameters import COLUMNS, implausible

ADMISSION = pd.Timestamp("2000-01-01", tz="UTC")
DESCRIPTORS = ("RecordID", "Age", "Gender", "Height", "ICUType")
VITALS = {"HR": "heart_rate", "NISysABP": "systolic_bp", "SysABP": "systolic_bp", "NIDiasABP": "diastolic_bp",
          "DiasABP": "diastolic_bp", "Temp": "temperature", "SaO2": "spo2", "RespRate": "respiration_rate",
          "Glucose": "glucose", "Weight": "weight"}
APPROXIMATIONS = ("SaO2 (arterial blood gas) used as SpO2", "GCS mapped to ACVPU (15 A, 13-14 C, 9-12 V, 4-8 P, 3 U)",
                  "where an arterial line and a cuff give a plausible pressure at the same minute, the arterial one "
                  "is the reading (the cuff's kept as lab:NISysABP / lab:NIDiasABP)")
# Each cuff pressure and the arterial line's pressure that takes its place at the same minute.
CUFF_WHEN_ARTERIAL = {"NISysABP": "SysABP", "NIDiasABP": "DiasABP"}


def gcs_to_acvpu(gcs: float) -> int:
    """ACVPU index (0 = Alert ... 4 = Unresponsive) for a Glasgow Coma Scale total."""
    return 0 if gcs >= 15 else 1 if gcs >= 13 else 2 if gcs >= 9 else 3 if gcs >= 4 else 4


@dataclass
class IcuStay:
    record_id: str
    descriptors: dict[str, float]
    frame: pd.DataFrame
    rejected: list[tuple[int, str]] = field(default_factory=list)
    cuff_beside_arterial: int = 0  # cuff pressures kept as lab: because the arterial line read at that minute


def read_physionet_record(text: str, name: str = "record.txt") -> IcuStay:
    """One ``set-a/NNNNNN.txt`` record; rows that cannot be read are listed with their line."""
    lines = text.removeprefix("\ufeff").splitlines()  # a byte-order mark from a spreadsheet save
    if not lines or lines[0].strip() != "Time,Parameter,Value":
        raise IngestError("a PhysioNet 2012 record starting with 'Time,Parameter,Value'",
                          f"{name}: {lines[0][:60] if lines else 'an empty file'!r}",
                          "pass an unedited set-a/*.txt file")
    descriptors: dict[str, float] = {}
    rows, rejected = [], []
    arterial_minutes = {parameter: set() for parameter in CUFF_WHEN_ARTERIAL.values()}
    cuff_rows: list[tuple[str, int]] = []  # (parameter, index in rows) of each cuff pressure
    for number, line in enumerate(lines[1:], start=2):
        try:
            clock, parameter, raw_value = line.split(",")
            hours, minutes = clock.split(":")
            if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2 and int(minutes) < 60):
                raise ValueError(clock)  # "25:99" is not 26:39, it is a broken line
            moment = ADMISSION + pd.Timedelta(hours=int(hours), minutes=int(minutes))
            value = float(raw_value)
        except ValueError:
            rejected.append((number, f"unreadable line {line[:60]!r}"))
            continue
        if value == -1:
            continue  # missing, by this data set's convention
        if parameter in DESCRIPTORS or (parameter == "Weight" and clock == "00:00"):
            descriptors[parameter] = value
            if parameter != "Weight":
                continue
        if parameter in VITALS:
            if parameter in arterial_minutes:
                if not implausible(VITALS[parameter], value):  # a damped line's 0 must not push out the cuff
                    arterial_minutes[parameter].add(moment)
            elif parameter in CUFF_WHEN_ARTERIAL:
                cuff_rows.append((parameter, len(rows)))
            rows.append((VITALS[parameter], moment, value))
        elif parameter == "GCS":
            rows.append(("consciousness", moment, float(gcs_to_acvpu(value))))
            rows.append(("lab:GCS", moment, value))  # the full scale, which ACVPU coarsens
        elif parameter == "FiO2":
            rows.append(("on_oxygen", moment, 1.0 if value > 0.21 else 0.0))
            rows.append(("lab:FiO2", moment, value))
        elif parameter == "MechVent":
            rows.append(("on_oxygen", moment, 1.0 if value > 0 else 0.0))
            rows.append(("lab:MechVent", moment, value))
        else:
            rows.append((f"lab:{parameter}", moment, value))
    # Two pressures at one minute (80 by cuff, 138 by arterial line) would leave NEWS2 to pick one
    # by file order: the arterial line, the ICU's reference when it is in, is the reading.
    moved = 0
    for parameter, index in cuff_rows:
        _, moment, value = rows[index]
        if moment in arterial_minutes[CUFF_WHEN_ARTERIAL[parameter]]:
            rows[index] = (f"lab:{parameter}", moment, value)
            moved += 1
    record_id = str(int(descriptors.get("RecordID", 0))) if "RecordID" in descriptors else Path(name).stem
    frame = pd.DataFrame(rows, columns=["parameter", "time", "value"])
    frame["patient_id"], frame["source"] = record_id, f"physionet2012:{name}"
    frame["artefact"] = pd.Series([implausible(p, v) for p, v in zip(frame["parameter"], frame["value"])], dtype=bool)
    return IcuStay(record_id, descriptors, frame[COLUMNS], rejected, moved)


def iter_physionet_set(archive: str | Path) -> Iterator[IcuStay]:
    """Every record of a ``set-a.tar.gz`` (or a folder of ``*.txt`` records)."""
    archive = Path(archive)
    if archive.is_dir():
        for path in sorted(archive.glob("*.txt")):
            yield read_physionet_record(path.read_text(encoding="utf-8"), path.name)
        return
    with tarfile.open(archive) as tar:
        for member in sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".txt")),
                             key=lambda m: m.name):
            handle = tar.extractfile(member)
            yield read_physionet_record(io.TextIOWrapper(handle, encoding="utf-8").read(), Path(member.name).name)


def read_outcomes(path: str | Path) -> pd.DataFrame:
    """``Outcomes-a.txt``: RecordID, SAPS-I, SOFA, Length_of_stay, Survival, In-hospital_death."""
    outcomes = pd.read_csv(path)
    expected = {"RecordID", "SAPS-I", "In-hospital_death"}
    if not expected <= set(outcomes.columns):
        raise IngestError(f"columns {', '.join(sorted(expected))}", ", ".join(outcomes.columns),
                          "pass the challenge's Outcomes-a.txt")
    return outcomes
