"""Everything the dashboard shows for one patient's vitals, computed in one place.

NEWS2 over time, the blood-pressure category of the recent readings, trend and NEWS2
alerts, and the sentence the text classifier reads. The Vitals page and the CLI both call
:func:`assess_patient`, so what a clinician sees and what a script prints agree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from healthmon.vitals.alerts import alerts_frame
from healthmon.vitals.bp import CRISIS, BPCategory, classify_bp, esc_grade
from healthmon.vitals.news2_alerts import news2_alerts
from healthmon.vitals.series import news2_over_time
from healthmon.vitals.text import summarise_vitals
from healthmon.vitals.trends import detect_alerts

BP_WINDOW = pd.Timedelta(days=7)  # the readings averaged for a category: the last week's
# Only a ward charts these (a NEWS2 chart records both at every round); a wearable, a home cuff or
# a Fitbit sends neither. Not respiration rate: consumer wearables export it too.
WARD_CHARTED = ("consciousness", "on_oxygen")


BP_PARAMETERS = ("systolic_bp", "diastolic_bp")
# Each cuffless estimate says so in its ``source`` (a prefix: the column holds 300 characters and a
# long file name must not cut the mark off), so it stays trend-only wherever the reading goes:
# stored, read back, mixed with a cuff's readings of the same week.
CUFFLESS_SOURCE = "cuffless estimate: "


def mark_cuffless(vitals: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``vitals`` whose blood-pressure readings are marked as a cuffless wearable's."""
    marked = vitals.copy()
    bp = marked["parameter"].isin(BP_PARAMETERS) & ~cuffless_rows(marked)
    marked.loc[bp, "source"] = CUFFLESS_SOURCE + marked.loc[bp, "source"].astype(str)
    return marked


def cuffless_rows(vitals: pd.DataFrame) -> pd.Series:
    """Which rows are a cuffless wearable's blood-pressure estimates."""
    return vitals["parameter"].isin(BP_PARAMETERS) & vitals["source"].astype(str).str.startswith(CUFFLESS_SOURCE)


def readings_setting(vitals: pd.DataFrame, patient_id: str) -> str:
    """Where a patient's readings were most likely taken: ``hospital`` where consciousness or
    air/oxygen were charted, else ``home``. Every page, the CLI and the report
    preset the setting from this, so a wearable's NEWS2 carries its "applied outside its
    setting" caveat and home blood pressure its home thresholds unless someone says otherwise."""
    mine = vitals["patient_id"].astype(str) == str(patient_id)
    return "hospital" if vitals.loc[mine, "parameter"].isin(WARD_CHARTED).any() else "home"


# Ends every trend alert fired by cuffless estimates.
ESTIMATES_SAID = " From cuffless estimates: a trend to confirm with a validated cuff, not a measurement."


@dataclass(frozen=True)
class VitalsAssessment:
    patient_id: str
    vitals: pd.DataFrame  # this patient's long table
    news2: pd.DataFrame  # news2_over_time rows
    bp: BPCategory | None
    bp_esc: str | None  # office readings only
    bp_crisis: tuple[str, ...]  # each reading above 180 and/or 120, named (UTC; the text stored advice triggers cite)
    bp_note: str  # why there is no category, or which pairs were left out
    alerts: pd.DataFrame  # alerts_frame rows, trend and NEWS2 together, by time
    skipped: tuple[str, ...]  # trend rules that could not be checked, and why
    summary: str  # the sentence for the classifier
    bp_readings: tuple[tuple[pd.Timestamp, float, float], ...] = ()  # (time, systolic, diastolic) the category averaged
    # cuffless estimates above 180/120 in the same week, named for a cuff reading; never staged
    crisis_estimates: tuple[str, ...] = ()
    not_alerted: tuple[str, ...] = ()  # readings a rule set aside (heart-rate rises and recoveries with walks), and why
    spo2_scale: int = 1  # NEWS2's SpO2 scale the scores were computed on (2: a prescribed 88-92 % target)

    @property
    def spo2_scale_words(self) -> str:
        """The scale as the report and the FHIR export name it."""
        return "scale 2 (a prescribed 88-92 % target)" if self.spo2_scale == 2 else "scale 1"

    @property
    def latest_news2(self) -> dict | None:
        return None if self.news2.empty else self.news2.iloc[-1].to_dict()


def bp_pairs(vitals: pd.DataFrame, *, end: pd.Timestamp | None = None
             ) -> tuple[list[tuple[pd.Timestamp, float, float]], list[str]]:
    """(time, systolic, diastolic) readings taken together in the week up to ``end`` (default:
    the latest pair), and a note for each pair left out (diastolic not below systolic: a
    swapped column)."""
    clean = vitals[~vitals["artefact"] & vitals["parameter"].isin(BP_PARAMETERS)]
    if clean.empty:
        return [], []
    wide = clean.pivot_table(index="time", columns="parameter", values="value", aggfunc="mean").dropna()
    if wide.empty or not {"systolic_bp", "diastolic_bp"} <= set(wide.columns):
        return [], []
    end = wide.index.max() if end is None else end
    wide = wide[(wide.index >= end - BP_WINDOW) & (wide.index <= end)]
    pairs, left_out = [], []
    for moment, row in wide.iterrows():
        if row["diastolic_bp"] >= row["systolic_bp"]:
            left_out.append(f"{moment:%Y-%m-%d %H:%M} UTC {row['systolic_bp']:.0f}/{row['diastolic_bp']:.0f}")
        else:
            pairs.append((moment, float(row["systolic_bp"]), float(row["diastolic_bp"])))
    return pairs, left_out


def _above_crisis(timed: list[tuple[pd.Timestamp, float, float]]) -> tuple[str, ...]:
    """Each pair above 180 and/or 120, as stored advice triggers cite it."""
    return tuple(f"{moment:%Y-%m-%d %H:%M} {systolic:.0f}/{diastolic:.0f} mmHg" for moment, systolic, diastolic in timed
                 if systolic > CRISIS[0] or diastolic > CRISIS[1])


def assess_patient(vitals: pd.DataFrame, patient_id: str, *, setting: str = "hospital", spo2_scale: int = 1,
                   lookback: str = "4h", descriptors: dict[str, float] | None = None,
                   summary_window: str | None = "7D") -> VitalsAssessment:
    """Scores, alerts and summary for one patient of a long vitals table (any number of patients).

    Cuffless blood-pressure estimates (:func:`mark_cuffless`) are never scored or staged: NEWS2
    and the category use the cuff's readings of the week up to the latest blood pressure of
    either kind (an old cuff reading does not stand in for this week's estimates); with none in
    that week, the estimates' mean is shown as a trend only (``bp.cuffless``), without a
    category, grade or crisis. Estimates above 180/120 in the week are named either way
    (``crisis_estimates``), for a cuff reading. The classifier's sentence leaves them out; the
    trend alerts and the chart still follow them.

    ``summary_window``: the sentence for the classifier covers the readings of this span up to
    the latest one (None = all), so months of stored readings are not pooled into one median;
    alerts still use the whole history, which their baselines need.
    """
    mine = vitals[vitals["patient_id"].astype(str) == str(patient_id)].sort_values("time", kind="stable")
    estimates = cuffless_rows(mine)
    measured = mine[~estimates]
    news2 = news2_over_time(measured, lookback=lookback, spo2_scale=spo2_scale, setting=setting)
    usable = mine["parameter"].isin(BP_PARAMETERS) & ~mine["artefact"] & mine["value"].notna()
    bp_end = mine.loc[usable, "time"].max() if usable.any() else None
    timed, left_out = bp_pairs(measured, end=bp_end)
    estimated, estimates_left_out = bp_pairs(mine[estimates], end=bp_end) if estimates.any() else ([], [])
    cuffless_bp = not timed and bool(estimated)
    if cuffless_bp:  # only estimates this week: their mean as a trend, never a category
        timed, left_out = estimated, estimates_left_out
    pairs = [(systolic, diastolic) for _, systolic, diastolic in timed]
    bp = classify_bp(pairs, setting="home" if setting == "home" else "office", cuffless=cuffless_bp) if pairs else None
    # The dates, not only "the last 7 days": the newest blood pressure may be months older than
    # the other vitals, and the category must not read as current then.
    note = "no blood-pressure readings with both systolic and diastolic" if not pairs else (
        f"averaged {len(pairs)} {'estimate' if cuffless_bp else 'reading'}(s) from {timed[0][0]:%Y-%m-%d} to "
        f"{timed[-1][0]:%Y-%m-%d} "
        "(the last 7 days of blood-pressure readings)")
    if left_out:
        note += f"; left out (diastolic not below systolic): {', '.join(left_out)}"
    # A crisis is any single reading in that range, not the week's mean: one 212/132 among
    # normal readings must not be averaged away. Estimates are named apart (crisis_estimates).
    crisis = () if cuffless_bp else _above_crisis(timed)
    # ESC/ESH grades are defined on office readings; at home hypertension starts at 135/85. A
    # cuffless estimate is graded by neither.
    esc = esc_grade(pairs) if pairs and setting != "home" and not cuffless_bp else None
    # The trend rules follow the estimates too (a trend is what they are good for), but apart
    # from the cuff's readings: a cuff reading judged against a median of estimates, or the
    # reverse, compares two kinds of measurement.
    report = detect_alerts(measured)
    from_estimates = detect_alerts(mine[estimates]).alerts if estimates.any() else ()
    alerts = alerts_frame(tuple(report.alerts) + tuple(replace(alert, message=alert.message + ESTIMATES_SAID)
                                                       for alert in from_estimates) + news2_alerts(news2))
    alerts = alerts.sort_values("time", kind="stable").reset_index(drop=True)
    # The sentence is read as measurements: a cuffless estimate would read as a blood pressure.
    window, window_news2 = measured, news2
    if summary_window is not None and len(mine):
        start = mine["time"].max() - pd.Timedelta(summary_window)
        window, window_news2 = measured[measured["time"] >= start], news2[news2["time"] >= start]
    return VitalsAssessment(str(patient_id), mine, news2, bp, esc, crisis, note, alerts, tuple(report.skipped),
                            summarise_vitals(window, descriptors=descriptors, news2=window_news2, spo2_scale=spo2_scale),
                            bp_readings=tuple(timed), not_alerted=tuple(report.not_alerted), spo2_scale=spo2_scale,
                            crisis_estimates=_above_crisis(estimated))
