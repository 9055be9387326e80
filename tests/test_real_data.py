"""Real public datasets read through ingest (fast; skipped when ../shared/data is absent)."""

from __future__ import annotations

import pytest

from conftest import SHARED_DATA


@pytest.mark.skipif(not (SHARED_DATA / "symptom2disease").is_dir(), reason=f"shared data not found at {SHARED_DATA}")
def test_real_public_csvs_ingest_without_rejections():
    from healthmon.ingest.notes import read_notes_file

    s2d = read_notes_file(SHARED_DATA / "symptom2disease" / "Symptom2Disease.csv")
    assert s2d.report.rows_accepted == 1200 and s2d.report.columns["label"] == "label"
    assert len({label for n in s2d.notes for label in n.labels}) == 24
    abstracts = read_notes_file(SHARED_DATA / "medical-abstracts" / "medical_tc_test.csv")
    assert abstracts.report.rows_accepted == 2888
    assert abstracts.report.columns == {"text": "medical_abstract", "label": "condition_label"}
