"""Synthetic week-long home vitals windows, summarised as text, for the demo model.

The demo classifier learns from healthmon's synthetic notes; these windows add device data
to that training set, so a vitals summary scored on the dashboard gets a meaningful demo
score and its explanation points at vitals words ("systolic BP median 152 mmHg, high").

Each window is generated as the long vitals table and summarised by the same
:func:`~healthmon.vitals.text.summarise_vitals` the dashboard uses. The condition signals are
the textbook ones, on purpose simple: hypertension raises home blood pressure (ACC/AHA home
stage 2 from 135/85); diabetes raises fasting glucose (ADA: 126 mg/dL and over);
cancer here means unintentional weight loss with less activity and a higher resting heart
rate, the non-specific signs that prompt screening. Every parameter is sometimes missing,
and "none" windows sometimes carry one borderline value, so no single word decides.
Nothing here is patient data, and the demo banner says so.
"""

from __future__ import annotations

import random

import pandas as pd

from healthmon.demo.vocabulary import DEMO_LABELS
from healthmon.types import Note
from healthmon.vitals.parameters import COLUMNS
from healthmon.vitals.text import summarise_vitals

START = pd.Timestamp("2026-01-05", tz="UTC")
LABELS = DEMO_LABELS  # one demo model learns notes and summaries: the same labels, in the same order
PAIRS = (("diabetes", "hypertension"), ("hypertension", "cancer"), ("diabetes", "cancer"))


def _window(r: random.Random, conditions: tuple[str, ...], patient: str) -> pd.DataFrame:
    hypertension, diabetes, cancer = (c in conditions for c in ("hypertension", "diabetes", "cancer"))
    sbp_mean = r.gauss(150, 8) if hypertension else r.gauss(118, 7)
    dbp_mean = r.gauss(93, 5) if hypertension else r.gauss(75, 5)
    glucose_mean = r.gauss(170, 25) if diabetes else r.gauss(92, 7)
    weight0 = r.gauss(88 if diabetes else 76, 10)
    weight_slope = -r.uniform(0.25, 0.5) if cancer else r.gauss(0, 0.05)  # kg per day
    steps_mean = r.gauss(3200, 900) if cancer else r.gauss(7800, 2000)
    hr_mean = r.gauss(88, 6) if cancer else r.gauss(70, 6)
    if not conditions and r.random() < 0.3:  # borderline values in healthy windows
        choice = r.choice(("sbp", "glucose", "hr"))
        sbp_mean += 12 if choice == "sbp" else 0
        glucose_mean += 25 if choice == "glucose" else 0
        hr_mean += 14 if choice == "hr" else 0
    present = {p for p in ("bp", "glucose", "weight", "steps", "hr", "spo2", "sleep") if r.random() < 0.8}
    rows = []
    for day in range(7):
        morning = START + pd.Timedelta(days=day, hours=7, minutes=r.randint(0, 50))
        evening = morning + pd.Timedelta(hours=12)
        if "bp" in present:
            for moment in (morning, evening):
                rows += [(moment, "systolic_bp", round(r.gauss(sbp_mean, 6))),
                         (moment, "diastolic_bp", round(r.gauss(dbp_mean, 4)))]
        if "hr" in present:
            rows.append((morning, "heart_rate", round(r.gauss(hr_mean, 4))))
        if "spo2" in present:
            rows.append((morning, "spo2", min(100, round(r.gauss(97, 1)))))
        if "glucose" in present:
            rows.append((morning, "glucose", round(r.gauss(glucose_mean, 12))))
        if "weight" in present:
            rows.append((morning, "weight", round(weight0 + weight_slope * day + r.gauss(0, 0.2), 1)))
        if "steps" in present:
            rows.append((START + pd.Timedelta(days=day), "steps", max(0, round(r.gauss(steps_mean, 900)))))
        if "sleep" in present:
            rows.append((START + pd.Timedelta(days=day), "sleep_minutes", round(r.gauss(440, 35))))
    frame = pd.DataFrame(rows, columns=["time", "parameter", "value"])
    frame["patient_id"], frame["artefact"], frame["source"] = patient, False, "synthetic"
    return frame[COLUMNS]


def synthetic_vitals_notes(n: int, *, seed: int = 13, multi_label_fraction: float = 0.15) -> list[Note]:
    """``n`` labelled vitals summaries (balanced labels, some pairs); the same seed gives the same notes."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    r = random.Random(seed)
    n_pairs = round(n * multi_label_fraction)
    plan = [(LABELS[i % 4],) for i in range(n - n_pairs)] + [PAIRS[i % 3] for i in range(n_pairs)]
    r.shuffle(plan)
    notes = []
    for i, labels in enumerate(plan, 1):
        conditions = () if labels == ("none",) else labels
        window = _window(r, conditions, f"synthetic-vitals-{i}")
        notes.append(Note(text=summarise_vitals(window), note_id=f"synthetic-vitals-{i}",
                          patient_id=f"synthetic-vitals-{i}", labels=labels, source="synthetic vitals"))
    return notes
