"""Device readings in the database: every upload with its ingest report, every reading once.

Storing is append-only and idempotent: the same value for the same patient, parameter and
time is one reading (a unique constraint, inserted with ``ON CONFLICT DO NOTHING``), so
uploading a file twice, or two overlapping exports, stores each reading once and says how
many were already there. Nothing stored is ever updated or deleted here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from healthmon.errors import IngestError
from healthmon.services.accounts import SignedIn, require
from healthmon.storage.db import insert_or_skip, transaction
from healthmon.storage.models import Patient, VitalReading, VitalsUpload
from healthmon.storage.repository import audit, patient_ids_for
from healthmon.types import as_utc
from healthmon.vitals.assess import WARD_CHARTED
from healthmon.vitals.parameters import COLUMNS

PARAMETER_LENGTH = 300  # VitalReading.parameter: FHIR lab names are "lab:<LOINC display>"
CHUNK = 2_000  # rows per INSERT: well under SQLite's and PostgreSQL's bound-parameter limits


@dataclass(frozen=True)
class StoredUpload:
    upload_id: int
    stored: int
    duplicates: int  # already stored before this upload
    patients: tuple[str, ...]
    unreadable: int = 0  # flagged cells with no number: listed in the upload's report, no reading to store
    repeated: int = 0  # the same reading more than once within this upload (stored once)


@dataclass(frozen=True)
class StoredPatient:
    patient_id: str
    readings: int
    first: datetime
    last: datetime


def store_vitals(factory: sessionmaker[Session], user: SignedIn | str | None, frame: pd.DataFrame, *, source: str,
                 fmt: str, report: dict) -> StoredUpload:
    """Store a long vitals table (:data:`healthmon.vitals.parameters.COLUMNS`) read from ``source`` in format ``fmt``.

    Each reading keeps its ``source``, which marks a cuffless wearable's blood pressure
    (:func:`healthmon.vitals.assess.mark_cuffless`). A reading already stored keeps the kind it
    was stored with: storing is append-only.

    ``user`` is the signed-in dashboard user (who needs ``vitals.upload``), or a plain actor
    name for the command line, whose shell access to the database is the authority.
    """
    actor = user if isinstance(user, str) else require(factory, user, "vitals.upload").name
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise IngestError(f"a vitals table with columns {', '.join(COLUMNS)}", f"no {', '.join(missing)}",
                          "pass the frame a healthmon.vitals reader returned")
    readable = frame.dropna(subset=["value", "time"])
    unreadable = len(frame) - len(readable)
    frame = readable.drop_duplicates(subset=["patient_id", "parameter", "time", "value"])
    repeated = len(readable) - len(frame)  # the same reading twice in this upload: stored once
    times = pd.to_datetime(frame["time"], utc=True)  # any zone to UTC: SQLite keeps wall-clock time only
    with transaction(factory) as session:
        upload = VitalsUpload(source=source[:300], format=fmt, uploaded_by=actor, report=report)
        session.add(upload)
        session.flush()
        ids = patient_ids_for(session, frame["patient_id"].astype(str).unique())
        rows = [{"patient_id": ids[str(p)], "upload_id": upload.id, "time": t.to_pydatetime(),
                 "parameter": parameter, "value": float(v), "artefact": bool(a), "source": str(s)[:300]}
                for p, t, parameter, v, a, s in zip(frame["patient_id"], times, frame["parameter"], frame["value"],
                                                    frame["artefact"], frame["source"])]
        too_long = sorted({r["parameter"] for r in rows if len(r["parameter"]) > PARAMETER_LENGTH})
        if too_long:
            raise IngestError(f"parameter names of at most {PARAMETER_LENGTH} characters", ", ".join(too_long)[:300],
                              "shorten the lab names in the reader")
        insert = insert_or_skip(session, VitalReading, ["patient_id", "parameter", "time", "value"])
        for start in range(0, len(rows), CHUNK):
            session.execute(insert, rows[start : start + CHUNK])
        stored = session.scalar(select(func.count()).select_from(VitalReading)
                                .where(VitalReading.upload_id == upload.id)) or 0
        upload.readings_stored, upload.readings_duplicate = stored, len(rows) - stored
        audit(session, actor, "vitals.upload", "vitals_upload", upload.id,
              after={"source": source, "format": fmt, "stored": stored, "duplicates": len(rows) - stored,
                     "repeated_in_upload": repeated, "unreadable": unreadable})
        return StoredUpload(upload.id, stored, len(rows) - stored, tuple(sorted(ids)), unreadable, repeated)


def stored_patient_count(factory: sessionmaker[Session]) -> int:
    """How many patients have stored readings (the home page's figure)."""
    with factory() as session:
        return session.scalar(select(func.count(func.distinct(VitalReading.patient_id)))) or 0


def stored_patients(factory: sessionmaker[Session]) -> list[StoredPatient]:
    """Patients with stored readings, most recently measured first."""
    with factory() as session:
        rows = session.execute(
            select(Patient.external_id, func.count(VitalReading.id), func.min(VitalReading.time),
                   func.max(VitalReading.time))
            .join(VitalReading, VitalReading.patient_id == Patient.id).group_by(Patient.external_id)
        ).all()
    patients = [StoredPatient(name, n, as_utc(first), as_utc(last)) for name, n, first, last in rows]
    return sorted(patients, key=lambda p: (p.last, p.patient_id), reverse=True)


def stored_setting(factory: sessionmaker[Session], patient_id: str) -> str:
    """:func:`healthmon.vitals.assess.readings_setting` of a patient's stored readings, from one
    query rather than loading them all: hospital where a ward charted consciousness or
    air/oxygen, else home."""
    with factory() as session:
        charted = session.scalar(
            select(VitalReading.id).join(Patient, Patient.id == VitalReading.patient_id)
            .where(Patient.external_id == patient_id, VitalReading.parameter.in_(WARD_CHARTED)).limit(1))
    return "hospital" if charted is not None else "home"


def load_vitals(factory: sessionmaker[Session], patient_id: str, *, since: datetime | None = None) -> pd.DataFrame:
    """One patient's stored readings as the long table, oldest first."""
    query = (select(Patient.external_id, VitalReading.time, VitalReading.parameter, VitalReading.value,
                    VitalReading.artefact, VitalReading.source)
             .join(Patient, Patient.id == VitalReading.patient_id).where(Patient.external_id == patient_id)
             .order_by(VitalReading.time, VitalReading.id))
    if since is not None:
        query = query.where(VitalReading.time >= since)
    with factory() as session:
        rows = session.execute(query).all()
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["time"] = pd.to_datetime([as_utc(t) for t in frame["time"]], utc=True)
    frame["artefact"] = frame["artefact"].astype(bool)
    return frame


def stored_descriptors(factory: sessionmaker[Session], patient_id: str) -> dict[str, float] | None:
    """The descriptors (age, sex, ICU type) stored with a patient's latest PhysioNet upload, if any,
    so the summary of stored readings reads as it did at upload."""
    with factory() as session:
        uploads = session.scalars(
            select(VitalsUpload).where(VitalsUpload.format == "physionet", VitalsUpload.id.in_(
                select(VitalReading.upload_id).join(Patient, Patient.id == VitalReading.patient_id)
                .where(Patient.external_id == patient_id))).order_by(VitalsUpload.id.desc())).all()
    for upload in uploads:
        found = (upload.report or {}).get("descriptors", {}).get(patient_id)
        if found:
            return found
    return None
