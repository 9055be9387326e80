"""Stored vitals (SQLite and PostgreSQL): every reading once, artefacts kept, uploads audited."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import select

from healthmon.services import accounts as auth
from healthmon.config import Settings
from healthmon.storage.db import session_factory, transaction, upgrade
from healthmon.storage.models import AuditEntry, VitalsUpload
from healthmon.ingest.vitals_csv import read_vitals_csv
from healthmon.services.vitals import load_vitals, store_vitals, stored_patients

CSV = """timestamp,patient,pulse,BP,SpO2
2026-03-01 08:00,p1,72,118/76,97
2026-03-01 09:00,p1,0,121/79,96
2026-03-02 09:00,p2,88,140/90,95
"""
LATER = """timestamp,patient,pulse
2026-03-01 09:00,p1,0
2026-03-03 09:00,p1,75
"""


@pytest.fixture()
def db(engine):
    upgrade(engine)
    factory = session_factory(engine)
    auth.add_user(factory, None, "cli", "clinician", "cli-password-1")
    auth.add_user(factory, None, "ann", "annotator", "ann-password-1")
    return factory


def _signed_in(db, name):
    return auth.sign_in(db, name, f"{name}-password-1", Settings())


def test_readings_are_stored_once_artefacts_kept_and_read_back_in_order(db):
    clinician = _signed_in(db, "cli")
    first = read_vitals_csv(CSV.encode(), "ward.csv")
    stored = store_vitals(db, clinician, first.frame, source="ward.csv", fmt="csv", report={"rows_read": 3})
    assert (stored.stored, stored.duplicates, stored.patients) == (len(first.frame), 0, ("p1", "p2"))
    again = store_vitals(db, clinician, first.frame, source="ward.csv", fmt="csv", report={})
    assert (again.stored, again.duplicates) == (0, len(first.frame))  # the same file twice: nothing twice
    overlap = read_vitals_csv(LATER.encode(), "later.csv")
    third = store_vitals(db, clinician, overlap.frame, source="later.csv", fmt="csv", report={})
    assert (third.stored, third.duplicates) == (1, 1)

    p1 = load_vitals(db, "p1")
    expected = pd.concat([first.frame[first.frame.patient_id == "p1"], overlap.frame.iloc[[1]]])
    assert len(p1) == len(expected) and p1["time"].is_monotonic_increasing
    assert sorted(zip(p1.parameter, p1.value, p1.artefact)) == sorted(zip(expected.parameter, expected.value,
                                                                         expected.artefact))
    assert p1.loc[p1.value == 0, "artefact"].tolist() == [True]  # the heart rate of 0 is kept once, flagged
    assert str(p1["time"].dt.tz) == "UTC"
    assert load_vitals(db, "p1", since=pd.Timestamp("2026-03-02", tz="UTC").to_pydatetime())["value"].tolist() == [75]
    assert [p.patient_id for p in stored_patients(db)] == ["p1", "p2"]  # p1 measured most recently
    with transaction(db) as s:
        uploads = s.scalars(select(VitalsUpload).order_by(VitalsUpload.id)).all()
        assert [(u.readings_stored, u.readings_duplicate, u.uploaded_by) for u in uploads] == [
            (len(first.frame), 0, "cli"), (0, len(first.frame), "cli"), (1, 1, "cli")]
        assert s.scalars(select(AuditEntry.action).where(AuditEntry.action == "vitals.upload")).all() == [
            "vitals.upload"] * 3


def test_an_annotator_cannot_store_readings_and_a_wrong_table_is_refused(db):
    data = read_vitals_csv(CSV.encode(), "ward.csv")
    with pytest.raises(auth.PermissionDenied, match="vitals upload"):
        store_vitals(db, _signed_in(db, "ann"), data.frame, source="ward.csv", fmt="csv", report={})
    with pytest.raises(Exception, match="columns patient_id, time"):
        store_vitals(db, _signed_in(db, "cli"), data.frame.drop(columns=["artefact"]), source="x", fmt="csv",
                     report={})
    assert stored_patients(db) == []


def test_repeats_within_one_upload_are_counted_apart_and_other_time_zones_are_stored_as_utc(db):
    frame = pd.DataFrame({
        "patient_id": ["p1", "p1", "p1"], "parameter": ["heart_rate"] * 3, "value": [70.0, 70.0, 72.0],
        "time": [pd.Timestamp("2026-03-01 10:00", tz="Europe/Berlin")] * 2 + [pd.Timestamp("2026-03-01 12:00",
                                                                                          tz="Europe/Berlin")],
        "artefact": [False] * 3, "source": ["watch"] * 3})
    stored = store_vitals(db, _signed_in(db, "cli"), frame, source="watch", fmt="csv", report={})
    assert (stored.stored, stored.duplicates, stored.repeated) == (2, 0, 1)
    back = load_vitals(db, "p1")
    assert back["time"].tolist() == [pd.Timestamp("2026-03-01 09:00", tz="UTC"), pd.Timestamp("2026-03-01 11:00",
                                                                                              tz="UTC")]
