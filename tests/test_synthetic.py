"""Tests for the synthetic demo-note generator (fast: one 1200-note corpus shared by most tests)."""

from __future__ import annotations

import math
import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from healthmon.demo import (
    DEMO_LABELS,
    SyntheticNote,
    demo_notes_frame,
    generate_demo_notes,
    write_demo_csv,
)

CONDITIONS = ("diabetes", "hypertension", "cancer")
ROOT = Path(__file__).resolve().parents[1]

# Any mention of a condition, positive or negated; in a note whose patient lacks the
# condition such a mention can only be a hard negative (negation, family history, ruled out).
MENTION = {
    "diabetes": re.compile(r"diabet|\bT[12]DM\b|\bDM[12]?\b|polyuria|polydipsia", re.I),
    "hypertension": re.compile(r"hypertens|\bHTN\b|high blood pressure|normotensive", re.I),
    "cancer": re.compile(
        r"cancer|\bca\b|malignan|carcinoma|lymphoma|BI-RADS|Lung-RADS|colonoscopy", re.I
    ),
}
# Positive evidence of the patient's own condition: names, abbreviations or the key lab.
POSITIVE = {
    "diabetes": re.compile(r"diabet|\bT[12]D(M)?\b|\bDM[12]?\b|NIDDM|A1c", re.I),
    "hypertension": re.compile(r"hypertens|\bHTN\b|high blood pressure|\bBP\b", re.I),
    "cancer": re.compile(
        r"cancer|\bca\b|carcinoma|\bIDC\b|NSCLC|\bCRC\b|PDAC|\bCaP\b|oncolog|malignan", re.I
    ),
}
# Treatments/findings that only a patient with the condition would have.
ONLY_IF_PRESENT = {
    "diabetes": re.compile(r"metformin|glargine|SGLT2i|empagliflozin|semaglutide|glipizide", re.I),
    "hypertension": re.compile(r"amlodipine|losartan|HCTZ|chlorthalidone|\bLVH\b", re.I),
    "cancer": re.compile(r"FOLFOX|oncolog|chemo|ECOG|metasta|adenocarcinoma|biopsy-proven", re.I),
}
A1C_VALUE = re.compile(r"\b(?:Hb|Hgb )?A1c:?\s(\d{1,2}\.\d)", re.I)
BP_VALUE = re.compile(r"\b(\d{2,3})/(\d{2,3})\b")


@pytest.fixture(scope="module")
def notes() -> list[SyntheticNote]:
    return generate_demo_notes(1200, seed=13)


def _singles(notes: list[SyntheticNote], label: str) -> list[SyntheticNote]:
    return [n for n in notes if n.labels == (label,)]


def test_same_seed_same_notes_and_global_rng_untouched() -> None:
    random.seed(99)
    state = random.getstate()
    first = generate_demo_notes(150, seed=7)
    assert random.getstate() == state
    assert first == generate_demo_notes(150, seed=7)


def test_different_seed_different_notes() -> None:
    a = generate_demo_notes(150, seed=7)
    b = generate_demo_notes(150, seed=8)
    assert [n.text for n in a] != [n.text for n in b]
    assert len({n.text for n in a} & {n.text for n in b}) < 5


def test_labels_valid_and_none_exclusive(notes: list[SyntheticNote]) -> None:
    for n in notes:
        assert n.labels and set(n.labels) <= set(DEMO_LABELS)
        assert len(n.labels) <= 2 and len(set(n.labels)) == len(n.labels)
        if "none" in n.labels:
            assert n.labels == ("none",)
        assert list(n.labels) == sorted(n.labels, key=DEMO_LABELS.index)


def test_single_labels_balanced(notes: list[SyntheticNote]) -> None:
    singles = Counter(n.labels[0] for n in notes if len(n.labels) == 1)
    total = sum(singles.values())
    assert set(singles) == set(DEMO_LABELS)
    for label in DEMO_LABELS:
        assert 0.22 <= singles[label] / total <= 0.28, singles


def test_every_pair_occurs(notes: list[SyntheticNote]) -> None:
    pairs = Counter(n.labels for n in notes if len(n.labels) == 2)
    assert set(pairs) == {("diabetes", "hypertension"), ("diabetes", "cancer"),
                          ("hypertension", "cancer")}


@pytest.mark.parametrize("fraction", [0.0, 0.15, 0.3])
def test_multi_label_fraction(fraction: float) -> None:
    got = generate_demo_notes(1000, seed=5, multi_label_fraction=fraction)
    share = sum(len(n.labels) == 2 for n in got) / len(got)
    assert abs(share - fraction) <= 0.05


def test_conditions_are_mentioned_in_their_notes(notes: list[SyntheticNote]) -> None:
    for n in notes:
        for cond in n.labels:
            if cond != "none":
                assert POSITIVE[cond].search(n.text), (cond, n.text)


def test_treatments_only_for_patients_with_the_condition(notes: list[SyntheticNote]) -> None:
    # The patterns do find the treatments in notes with the condition, so "no match" below means something.
    for cond in CONDITIONS:
        assert any(ONLY_IF_PRESENT[cond].search(n.text) for n in notes if cond in n.labels), cond
    for n in notes:
        for cond in CONDITIONS:
            if cond not in n.labels:
                hit = ONLY_IF_PRESENT[cond].search(n.text)
                assert hit is None, (cond, hit and hit.group(), n.text)


def test_hard_negatives_in_none_notes(notes: list[SyntheticNote]) -> None:
    none = _singles(notes, "none")
    with_mention = [n for n in none if any(p.search(n.text) for p in MENTION.values())]
    assert len(with_mention) / len(none) >= 0.3
    sentences = [s for n in none for s in re.split(r"(?<=[.;\n])\s*", n.text)]

    def cue_with_condition(cue: str) -> bool:
        return any(
            re.search(cue, s, re.I) and any(p.search(s) for p in MENTION.values())
            for s in sentences
        )

    assert cue_with_condition(r"\bdenies\b")
    assert cue_with_condition(r"\bno (?:personal )?(?:history|hx)\b")
    assert cue_with_condition(r"family history|\bmother\b|\bfather\b")
    assert cue_with_condition(r"ruled out|\br/o\b")


@pytest.mark.parametrize("label", CONDITIONS)
def test_hard_negatives_in_single_condition_notes(notes: list[SyntheticNote], label: str) -> None:
    group = _singles(notes, label)
    others = [c for c in CONDITIONS if c != label]
    share = sum(any(MENTION[c].search(n.text) for c in others) for n in group) / len(group)
    assert share >= 0.3


def test_lab_values_have_units_and_match_labels(notes: list[SyntheticNote]) -> None:
    text = "\n".join(n.text for n in notes)
    for unit in (r"\d%", r"mmol/mol", r"mg/dL", r"mmol/L", r"mm ?Hg", r"ng/mL"):
        assert re.search(unit, text), unit
    checked = Counter()
    for n in notes:
        a1cs = [float(v) for v in A1C_VALUE.findall(n.text)]
        if "diabetes" in n.labels:
            assert all(v >= 6.0 for v in a1cs), n.text
            checked["diabetic A1c"] += len(a1cs)
        else:
            assert all(v <= 5.7 for v in a1cs), n.text
            checked["other A1c"] += len(a1cs)
        if n.labels == ("none",):
            for sys_bp, dia_bp in BP_VALUE.findall(n.text):
                assert int(sys_bp) < 135 and int(dia_bp) < 90, n.text
                checked["none BP"] += 1
    # Each rule above saw values (a regex that stopped matching would pass it silently).
    assert min(checked[k] for k in ("diabetic A1c", "other A1c", "none BP")) >= 10, checked
    htn = _singles(notes, "hypertension")
    htn_high = [n for n in htn if any(int(s) >= 140 for s, _ in BP_VALUE.findall(n.text))]
    assert len(htn_high) >= 0.3 * len(htn)


def test_lengths_vary_and_some_notes_are_long(notes: list[SyntheticNote]) -> None:
    words = [len(n.text.split()) for n in notes]
    assert min(words) < 30
    assert sum(w > 300 for w in words) >= 0.03 * len(notes)
    assert sum(w > 400 for w in words) >= 0.02 * len(notes)
    assert sum(30 <= w <= 250 for w in words) >= 0.6 * len(notes)


def test_texts_unique_and_no_label_leak(notes: list[SyntheticNote]) -> None:
    keys = [" ".join(n.text.split()).casefold() for n in notes]
    assert len(set(keys)) == len(keys)
    for n in notes:
        assert not re.search(r"\blabels?\b", n.text, re.I)
        assert not re.search(r"\bnone\s*\|", n.text)


def test_ids(notes: list[SyntheticNote]) -> None:
    ids = [n.note_id for n in notes]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"SYN-\d{5}", i) for i in ids)
    assert all(re.fullmatch(r"SYN-P\d{4,}", n.patient_id) for n in notes)
    by_patient: dict[str, set[tuple[str, ...]]] = {}
    for n in notes:
        by_patient.setdefault(n.patient_id, set()).add(n.labels)
    # Repeat visits exist, and a patient's conditions do not change between visits.
    assert len(by_patient) < len(notes)
    assert all(len(labels) == 1 for labels in by_patient.values())


def test_frame_and_csv_round_trip(tmp_path) -> None:
    notes = generate_demo_notes(60, seed=3)
    frame = demo_notes_frame(notes)
    assert list(frame.columns) == ["note_id", "patient_id", "text", "labels", "synthetic"]
    out = write_demo_csv(tmp_path / "nested" / "demo.csv", n=60, seed=3)
    assert out.exists()
    back = pd.read_csv(out, encoding="utf-8")
    assert list(back.columns) == list(frame.columns)
    assert back["synthetic"].astype(bool).all()
    assert back["text"].tolist() == [n.text for n in notes]
    assert back["labels"].tolist() == ["|".join(n.labels) for n in notes]
    assert back["note_id"].tolist() == [n.note_id for n in notes]


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_bad_n_raises(n: object) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(n))):
        generate_demo_notes(n)  # type: ignore[arg-type]


@pytest.mark.parametrize("fraction", [-0.1, 1.5, math.nan])
def test_bad_fraction_raises(fraction: float) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(fraction))):
        generate_demo_notes(10, multi_label_fraction=fraction)


def test_small_n_edge_cases() -> None:
    assert len(generate_demo_notes(1, seed=1)) == 1
    all_multi = generate_demo_notes(9, seed=1, multi_label_fraction=1.0)
    assert all(len(n.labels) == 2 for n in all_multi)


def test_output_does_not_depend_on_hash_seed() -> None:
    # String hashing is randomised per process; iterating a set of strings anywhere in the
    # generator would make "same seed" differ between runs of the demo.
    code = (
        "import hashlib; from healthmon.demo import generate_demo_notes; "
        "print(hashlib.sha256(repr(generate_demo_notes(80, seed=4)).encode()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": hs, "PYTHONPATH": str(ROOT)},
        ).stdout
        for hs in ("1", "2")
    }
    assert len(digests) == 1


def test_demo_training_notes_add_vitals_summaries_the_vitals_page_recognises() -> None:
    # The demo model must have read summaries, or the Vitals page scores them untested.
    from healthmon.demo import demo_notes
    from healthmon.vitals.text import looks_like_vitals_summary

    mixed = demo_notes(60, 13, n_summaries=20)
    summaries = [n for n in mixed if looks_like_vitals_summary(n.text)]
    assert len(mixed) == 80 and len(summaries) == 20
    assert {label for n in summaries for label in n.labels} == set(DEMO_LABELS)
    assert not any(looks_like_vitals_summary(n.text) for n in demo_notes(60, 13))
