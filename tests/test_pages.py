"""Streamlit pages through AppTest, serving a tiny trained version (the model is real but tiny)."""

from __future__ import annotations

import html
import re

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from healthmon.training.args import TrainArgs
from healthmon.training.trainer import train

from conftest import ROOT


@pytest.fixture()
def served(settings, notes, monkeypatch):
    version = train(notes, TrainArgs(mode="head", max_steps=2), out_dir=settings.data_dir / "served",
                    settings=settings, progress=False).version_dir
    monkeypatch.setenv("HEALTHMON_ACTIVE_MODEL", str(version))
    monkeypatch.setenv("HEALTHMON_BASE_MODEL", settings.base_model)
    monkeypatch.setenv("HEALTHMON_DATA_DIR", str(settings.data_dir))
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield version
    st.cache_resource.clear()
    st.cache_data.clear()


def test_home_without_a_model_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("HEALTHMON_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("HEALTHMON_ACTIVE_MODEL", raising=False)
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert "python -m healthmon demo" in at.info[0].value


def test_home_shows_the_model_and_scores_a_pasted_note(served):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert any(m.label == "Model version" and m.value == "served" for m in at.metric)
    # The app applied the migrations at start: the default SQLite database exists and is current.
    from healthmon.storage.db import current_revision, head_revision, make_engine

    engine = make_engine(f"sqlite:///{served.parent / 'healthmon.db'}")
    assert current_revision(engine) == head_revision()
    engine.dispose()
    at.text_area[0].input("Patient reports polyuria, glucose 240 mg/dL").run()
    at.button[0].click().run()
    assert not at.exception
    assert any("Predicted:" in md.value for md in at.markdown)
    assert any("Why this score?" in h.value for h in at.subheader)
    shaded = [el for el in at.get("html")]
    assert shaded and "hm-expl" in shaded[0].proto.body
    # Choosing another label keeps the note and explains that label instead.
    at.selectbox(key="explain_target").select("cancer").run()
    assert not at.exception
    assert "Why <b>cancer</b>" in at.get("html")[0].proto.body


def test_home_renders_hostile_note_text_as_text(served):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.text_area[0].input("glucose 240 <script>alert(1)</script> <img src=x onerror=alert(1)>").run()
    at.button[0].click().run()
    assert not at.exception
    body = at.get("html")[0].proto.body
    assert "<script" not in body and "<img" not in body
    # What the reader sees (tags stripped, entities decoded) is the note, character for character.
    visible = html.unescape(re.sub(r"<style>.*?</style>|<[^>]+>", "", body, flags=re.S))
    assert "glucose 240 <script>alert(1)</script> <img src=x onerror=alert(1)>" in visible


def test_home_rejects_an_empty_note_with_a_message(served):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.button[0].click().run()
    assert not at.exception
    assert at.error and "Expected" in at.error[0].value and "Fix" in at.error[0].value


def test_notes_page_scores_pasted_text(served):
    at = AppTest.from_file(str(ROOT / "pages" / "1_Notes.py"), default_timeout=120).run()
    assert not at.exception
    at.text_area[0].input("BP 162/98 mmHg on amlodipine").run()
    at.button[0].click().run()
    assert not at.exception
    table = at.dataframe[-1].value
    assert list(table["note"]) and {"P(diabetes)", "P(hypertension)", "P(cancer)"} <= set(table.columns)
    assert table[["P(diabetes)", "P(hypertension)", "P(cancer)"]].sum(axis=1).iloc[0] == pytest.approx(1.0)



def test_notes_are_saved_for_review_and_reviewed_blind_first(served):
    from sqlalchemy import select

    from healthmon.storage.db import make_engine, session_factory, transaction
    from healthmon.storage.models import AuditEntry, Review

    notes = AppTest.from_file(str(ROOT / "pages" / "1_Notes.py"), default_timeout=120).run()
    notes.text_area[0].input("Patient reports polyuria, glucose 240 mg/dL <b>bold</b>").run()
    notes.button[0].click().run()
    assert not notes.exception and any("Saved 1 case(s) for review" in c.value for c in notes.caption)

    review = AppTest.from_file(str(ROOT / "pages" / "2_Review.py"), default_timeout=120).run()
    assert not review.exception
    review.text_input[0].input("ann")
    review.button[0].click().run()  # the form's Add button submits the typed name
    assert not review.exception and review.selectbox(key="reviewer").value == "ann"
    # Blind-first: no model output until a label is committed.
    assert not review.get("plotly_chart") and not [h for h in review.get("html")]
    review.multiselect(key=[w.key for w in review.multiselect][0]).select("hypertension").run()
    review.button[-1].click().run()  # commit and reveal
    assert not review.exception and review.get("plotly_chart")
    final = [w for w in review.multiselect if w.key.startswith("final-")][0]
    assert final.value == ["hypertension"]
    final.unselect("hypertension").select("diabetes").run()
    [b for b in review.button if b.label == "Submit review"][0].click().run()
    assert not review.exception
    assert any("changed after the reveal" in s.value for s in review.success)

    engine = make_engine(f"sqlite:///{served.parent / 'healthmon.db'}")
    with transaction(session_factory(engine)) as s:
        row = s.scalar(select(Review))
        assert row.labels == ["diabetes"] and row.blind_labels == ["hypertension"]
        assert row.saw_model_output is False and row.changed_after_reveal is True
        assert "review.submit" in s.scalars(select(AuditEntry.action)).all()
    engine.dispose()
