"""Everything the dashboard shows for one patient's vitals, computed in one place.

NEWS2 over time, the blood-pressure category of the recent readings, trend and NEWS2
alerts, and the sentence the text classifier reads. The Vitals page and the CLI both call
:func:`assess_patient`, so what a clinician sees and what a script prints agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from healthmon.vitals.bp import BPCategory, classify_bp, esc_grade
from healthmon.vitals.series import news2_over_time
from healthmon.vitals.text import summarise_vitals
from healthmon.vitals.trends import alerts_frame, detect_alerts, news2_alerts

BP_WINDOW = pd.Timedelta(days=7)  # the readings averaged for a category: the last week's


@dataclass(frozen=True)
class VitalsAssessment:
    patient_id: str
    vitals: pd.DataFrame  # this patient's long table
    news2: pd.DataFrame  # news2_over_time rows
    bp: BPCategory | None
    bp_esc: str | None
    bp_note: str  # why there is no category, or which pairs were left out
    alerts: pd.DataFrame  # alerts_frame rows, trend and NEWS2 together, by time
    skipped: tuple[str, ...]  # trend rules that could not be checked, and why
    summary: str  # the sentence for the classifier

    @property
    def latest_news2(self) -> dict | None:
        return None if self.news2.empty else self.news2.iloc[-1].to_dict()


def bp_pairs(vitals: pd.DataFrame) -> tuple[list[tuple[float, float]], list[str]]:
    """(systolic, diastolic) readings taken at the same time in the last week of BP data,
    and a note for each pair left out (diastolic not below systolic: a swapped column)."""
    clean = vitals[~vitals["artefact"] & vitals["parameter"].isin(["systolic_bp", "diastolic_bp"])]
    if clean.empty:
        return [], []
    wide = clean.pivot_table(index="time", columns="parameter", values="value", aggfunc="mean").dropna()
    if wide.empty or not {"systolic_bp", "diastolic_bp"} <= set(wide.columns):
        return [], []
    wide = wide[wide.index >= wide.index.max() - BP_WINDOW]
    pairs, left_out = [], []
    for moment, row in wide.iterrows():
        if row["diastolic_bp"] >= row["systolic_bp"]:
            left_out.append(f"{moment:%Y-%m-%d %H:%M} {row['systolic_bp']:.0f}/{row['diastolic_bp']:.0f}")
        else:
            pairs.append((float(row["systolic_bp"]), float(row["diastolic_bp"])))
    return pairs, left_out


def assess_patient(vitals: pd.DataFrame, patient_id: str, *, setting: str = "hospital", spo2_scale: int = 1,
                   lookback: str = "4h", cuffless_bp: bool = False,
                   descriptors: dict[str, float] | None = None) -> VitalsAssessment:
    """Scores, alerts and summary for one patient of a long vitals table (any number of patients)."""
    mine = vitals[vitals["patient_id"].astype(str) == str(patient_id)].sort_values("time", kind="stable")
    news2 = news2_over_time(mine, lookback=lookback, spo2_scale=spo2_scale, setting=setting)
    pairs, left_out = bp_pairs(mine)
    bp = classify_bp(pairs, setting="home" if setting == "home" else "office", cuffless=cuffless_bp) if pairs else None
    note = "no blood-pressure readings with both systolic and diastolic" if not pairs else (
        f"averaged {len(pairs)} reading(s) from the last 7 days of readings")
    if left_out:
        note += f"; left out (diastolic not below systolic): {', '.join(left_out)}"
    report = detect_alerts(mine)
    alerts = alerts_frame(tuple(report.alerts) + news2_alerts(news2))
    alerts = alerts.sort_values("time", kind="stable").reset_index(drop=True)
    return VitalsAssessment(str(patient_id), mine, news2, bp, esc_grade(pairs) if pairs else None, note, alerts,
                            tuple(report.skipped), summarise_vitals(mine, descriptors=descriptors, news2=news2))
