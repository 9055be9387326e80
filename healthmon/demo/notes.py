"""Seeded generator of SYNTHETIC labelled clinical notes for the demo model.

Every note, patient id, lab value and sentence here is invented from templates and phrase
banks; no real patient data is used and nothing is downloaded. The corpus exists so that
``healthmon demo`` can fine-tune and show a working classifier (none / diabetes /
hypertension / cancer) on a fresh install, and so the training pipeline can be tested end to
end without anyone handling protected health information.

The notes are deliberately not trivially separable: conditions are named with varied
abbreviations, lab values carry units and label-consistent ranges, and many notes contain
*hard negatives* -- negations ("denies polyuria"), family history ("mother had breast
cancer") and ruled-out work-ups -- about conditions the patient does NOT have. Labels always
describe the patient's own conditions only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from healthmon.demo.patients import Patient, make_patient
from healthmon.demo.writer import NoteWriter

_PAIRS: tuple[tuple[str, str], ...] = (
    ("diabetes", "hypertension"),
    ("diabetes", "cancer"),
    ("hypertension", "cancer"),
)

# Share of notes in each length tier. Long notes exceed one 512-token window so the
# windowed scorer gets exercised; brief ones mimic one-line telephone/refill notes.
_BRIEF_SHARE = 0.12
_LONG_SHARE = 0.05
_MAX_RETRIES = 50


@dataclass(frozen=True)
class SyntheticNote:
    """One invented note and the conditions of its invented patient.

    Attributes:
        note_id: ``SYN-00001``-style id, unique within one generated corpus.
        patient_id: ``SYN-P0001``-style id; a patient may have several notes.
        text: the note text.
        labels: ``("none",)`` or one/two of diabetes, hypertension, cancer in DEMO_LABELS order.
    """

    note_id: str
    patient_id: str
    text: str
    labels: tuple[str, ...]


def _label_plan(r: random.Random, n: int, multi_label_fraction: float) -> list[tuple[str, ...]]:
    """Exact label counts (balanced singles, evenly spread pairs), shuffled."""
    n_multi = round(n * multi_label_fraction)
    n_single = n - n_multi
    plan: list[tuple[str, ...]] = []
    singles: list[tuple[str, ...]] = [("none",), ("diabetes",), ("hypertension",), ("cancer",)]
    for lab in singles:
        plan += [lab] * (n_single // 4)
    # Remainders go to randomly chosen classes so no class is systematically favoured.
    plan += r.sample(singles, n_single % 4)
    plan += [p for _ in range(n_multi // 3) for p in _PAIRS]
    plan += r.sample(list(_PAIRS), n_multi % 3)
    r.shuffle(plan)
    return plan


def generate_demo_notes(
    n: int = 1200, *, seed: int = 13, multi_label_fraction: float = 0.15
) -> list[SyntheticNote]:
    """Generate ``n`` synthetic labelled notes; the same arguments always give the same notes.

    Args:
        n: number of notes (>= 1).
        seed: seed of the private ``random.Random`` (the global RNG is never touched).
        multi_label_fraction: share of notes whose patient has two conditions (0..1); the
            rest are split evenly between none / diabetes / hypertension / cancer.

    Raises:
        ValueError: for n < 1 or a fraction outside [0, 1].
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not isinstance(multi_label_fraction, (int, float)) or not 0.0 <= multi_label_fraction <= 1.0:
        raise ValueError(
            f"multi_label_fraction must be between 0 and 1, got {multi_label_fraction!r}"
        )
    r = random.Random(seed)
    plan = _label_plan(r, n, float(multi_label_fraction))
    # Fixed quotas (not per-note coin flips) so even small corpora get their long notes.
    n_long = round(n * _LONG_SHARE)
    n_brief = round(n * _BRIEF_SHARE)
    tiers = ["long"] * n_long + ["brief"] * n_brief + ["standard"] * (n - n_long - n_brief)
    r.shuffle(tiers)
    patients: dict[tuple[str, ...], list[Patient]] = {}
    note_counts: dict[str, int] = {}
    seen: set[str] = set()
    notes: list[SyntheticNote] = []
    next_patient = 1
    for i, (labels, tier) in enumerate(zip(plan, tiers), 1):
        conditions = () if labels == ("none",) else labels
        pool = [p for p in patients.get(labels, []) if note_counts[p.patient_id] < 4]
        # About a quarter of notes are repeat visits, so patient-level splits matter.
        if pool and r.random() < 0.25:
            patient = r.choice(pool)
        else:
            patient = make_patient(r, next_patient, conditions)
            next_patient += 1
            patients.setdefault(labels, []).append(patient)
        note_counts[patient.patient_id] = note_counts.get(patient.patient_id, 0) + 1
        first_visit = note_counts[patient.patient_id] == 1
        # Duplicate texts (same key as training's de-duplication: whitespace and case folded)
        # would be dropped there and skew the label counts, so redraw the rare collision.
        for _ in range(_MAX_RETRIES):
            text = NoteWriter(r, patient, tier, first_visit).build()
            key = " ".join(text.split()).casefold()
            if key not in seen:
                break
        seen.add(key)
        notes.append(SyntheticNote(f"SYN-{i:05d}", patient.patient_id, text, labels))
    return notes
