"""Trends and anomalies in a patient's own vitals: rolling baselines, sustained shifts, sudden jumps.

Every check compares a patient with *their own* recent past, never with other patients,
and every :class:`Alert` carries the exact readings that fired it (``readings``), so the
dashboard can mark them on the chart and the clinician can check the arithmetic.

Two kinds of rule, both plain data (:data:`SHIFT_RULES`, :data:`JUMP_RULES`):

* **Sustained shift** (:class:`ShiftRule`): readings become one value per UTC calendar day
  (resting heart rate = the day's 10th-percentile reading; steps and sleep = the day's
  total; SpO2 and weight = the day's lower median). The median of the last ``recent_days``
  daily values is compared with the median of the ``baseline_days`` before them. Because
  the median moves only when at least half the days have moved, one bad day cannot fire
  it: a median 10 /min up means at least 4 of the last 7 days were. With an even number of
  days the middle day nearer the baseline is taken, so a majority must have moved then too
  (3 of 4, not 2). The rule is evaluated
  on every day with data and a run of consecutive firing days is one alert, at its first
  day (the earliest warning), so a shift that lasts three weeks is one marker, not 21.
* **Sudden jump** (:class:`JumpRule`): each reading against the median of the patient's
  previous ``history`` readings (within ``lookback``). It fires when the difference is
  more than ``robust_sds`` robust standard deviations (1.4826 x MAD, floored, because a
  flat run of identical readings has a MAD of 0) *and* at least ``min_change`` in
  canonical units, so a statistically unusual but clinically trivial wobble in a very
  steady patient stays quiet. Consecutive firing readings in one direction are one alert.
  A rise while the patient is walking or exercising (``activity_steps`` or more steps
  recorded in the ``activity_window`` before the reading, from a wearable that records
  steps at least hourly, or a walk of that many steps starting with the rise) is expected and
  is not alerted, nor is the fall back into the NEWS2 zero-point band once the walking stops
  (the median it falls from was the walk's, not the patient's resting value);
  :attr:`AlertReport.not_alerted` names each such reading, so it is never silently dropped.

Artefact rows (and NaN values) are dropped first: they are never a baseline and never a
trigger. Only readings at or before ``now`` are used. Where a rule cannot be checked as of
``now`` (too little history), no alert is made and :attr:`AlertReport.skipped` says why.
Days are UTC calendar days: the long table stores UTC and carries no patient time zone.
The thresholds are screening heuristics for a preventive-care dashboard, chosen and
explained below; they are meant to be tuned per programme, not read as diagnoses.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from healthmon.errors import ConfigError, IngestError
from healthmon.vitals.ingest import UNITS
from healthmon.vitals.news2 import NEWS2_BANDS, band_points, charted_value, zero_point_band

# MAD x 1.4826 estimates the standard deviation of normally distributed data.
MAD_TO_SD = 1.4826
SEVERITIES = ("low", "medium", "high")
DIRECTIONS = ("up", "down")
DAILY_AGGREGATES = ("p10", "median", "sum")
BASELINE_STATS = ("median", "min", "max")
# Comparisons are "at least the threshold"; the tolerance keeps a change that is exactly the
# threshold on paper (70 - 60 = 10) from missing it by a floating-point hair.
TOLERANCE = 1e-9

# Floor of the robust SD, about one reading's precision (device resolution / observer rounding).
# Without it a run of identical readings (MAD 0) would make any change "infinitely unusual".
SPREAD_FLOORS = {"heart_rate": 3.0, "systolic_bp": 5.0, "diastolic_bp": 4.0, "spo2": 1.0, "respiration_rate": 1.5,
                 "temperature": 0.2, "weight": 0.3, "glucose": 10.0}
NAMES = {"heart_rate": "Heart rate", "systolic_bp": "Systolic BP", "diastolic_bp": "Diastolic BP", "spo2": "SpO2",
         "respiration_rate": "Respiration rate", "temperature": "Temperature", "steps": "Daily steps",
         "sleep_minutes": "Sleep", "weight": "Weight", "glucose": "Glucose", "news2": "NEWS2"}
REQUIRED = ("patient_id", "time", "parameter", "value", "artefact")


@dataclass(frozen=True)
class Alert:
    """One finding, with the readings that fired it.

    Attributes:
        patient_id: whose readings.
        parameter: canonical parameter (``heart_rate``, ``steps`` ...) or ``news2``.
        kind: ``sustained_shift``, ``sudden_jump`` or ``news2``.
        direction: ``up`` or ``down`` (NEWS2 alerts are always ``up``: worse).
        severity: ``low``, ``medium`` or ``high`` (see the rules for how each is set).
        time: when it fired: the time of the reading that made the rule true.
        message: one plain sentence for the clinician, with numbers and units.
        baseline: the value compared against (``None`` for NEWS2, which has a fixed chart).
        current: the value that crossed the threshold (a 7-day median, a reading, a score).
        change: ``current - baseline`` in ``unit`` (``None`` for NEWS2).
        unit: canonical unit of ``baseline``, ``current`` and ``change``.
        rule_id: id of the rule that fired.
        threshold: that rule's threshold (its unit, or a fraction for relative rules).
        rule: the rule in words.
        readings: ``(time, value)`` of each input reading that fired it, oldest first.
    """

    patient_id: str
    parameter: str
    kind: str
    direction: str
    severity: str
    time: pd.Timestamp
    message: str
    baseline: float | None
    current: float
    change: float | None
    unit: str
    rule_id: str
    threshold: float
    rule: str
    readings: tuple[tuple[pd.Timestamp, float], ...]


@dataclass(frozen=True)
class AlertReport:
    """What :func:`detect_alerts` found.

    Attributes:
        alerts: sorted by time (then patient, parameter, rule).
        skipped: why a rule could not be checked for a patient as of ``now``, one sentence each.
        now: the evaluation time (readings after it were ignored); ``None`` for no readings.
        not_alerted: readings that met a rule but were not alerted, and why (a heart-rate
            rise during activity), one sentence each.
    """

    alerts: tuple[Alert, ...]
    skipped: tuple[str, ...]
    now: pd.Timestamp | None
    not_alerted: tuple[str, ...] = ()

    def frame(self) -> pd.DataFrame:
        return alerts_frame(self.alerts)


@dataclass(frozen=True)
class ShiftRule:
    """A sustained shift: the median of recent daily values against the patient's own baseline.

    Attributes:
        rule_id: stable id, quoted in alerts and advice.
        parameter: canonical parameter.
        label: what the daily value is called in messages ("Resting heart rate").
        direction: ``up`` or ``down``: the worrying direction.
        change: minimum change in that direction, in the parameter's unit, or a fraction of
            the baseline when ``relative`` (0.30 = 30 %).
        daily: how one day's readings become its value: ``p10`` (10th percentile), ``median``
            (both the lower one, so the day's value is always a real reading) or ``sum``.
        recent_days / baseline_days: lengths of the two windows; the baseline ends where the
            recent window starts.
        baseline_stat: ``median`` of the baseline days, or ``min`` / ``max`` ("gain since the
            lowest weight of the last 3 days").
        min_recent_days / min_baseline_days: days with data each window needs, else skipped.
        ignore_zero_days: drop daily values of 0 (a tracker that was not worn).
        severity: severity at the threshold; one level higher at twice the threshold.
        why: the clinical reason for the rule and its numbers.
    """

    rule_id: str
    parameter: str
    label: str
    direction: str
    change: float
    relative: bool = False
    daily: str = "median"
    recent_days: int = 7
    baseline_days: int = 28
    baseline_stat: str = "median"
    min_recent_days: int = 4
    min_baseline_days: int = 14
    ignore_zero_days: bool = False
    severity: str = "low"
    why: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.direction not in DIRECTIONS:
            problems.append(f"direction {self.direction!r} (use 'up' or 'down')")
        if self.daily not in DAILY_AGGREGATES:
            problems.append(f"daily {self.daily!r} (use one of {', '.join(DAILY_AGGREGATES)})")
        if self.baseline_stat not in BASELINE_STATS:
            problems.append(f"baseline_stat {self.baseline_stat!r} (use one of {', '.join(BASELINE_STATS)})")
        if self.severity not in SEVERITIES:
            problems.append(f"severity {self.severity!r} (use one of {', '.join(SEVERITIES)})")
        if not self.change > 0 or (self.relative and self.change >= 1):
            problems.append(f"change {self.change!r} (a positive amount; a fraction below 1 when relative)")
        if not 1 <= self.min_recent_days <= self.recent_days:
            problems.append(f"min_recent_days {self.min_recent_days!r} (1 to recent_days={self.recent_days})")
        if not 1 <= self.min_baseline_days <= self.baseline_days:
            problems.append(f"min_baseline_days {self.min_baseline_days!r} (1 to baseline_days={self.baseline_days})")
        if problems:
            raise ConfigError(f"a valid shift rule {self.rule_id!r}", "; ".join(problems), "fix those fields")

    def describe(self) -> str:
        amount = f"{self.change:.0%}" if self.relative else _amount(self.change, self.parameter)
        recent = f"{self.recent_days}-day median" if self.recent_days > 1 else "daily value"
        side = "above" if self.direction == "up" else "below"
        return f"{self.label} {recent} at least {amount} {side} {_baseline_phrase(self)}"


def _duration_problems(field: str, value: str, example: str) -> list[str]:
    """What is wrong with a rule's duration field, for its ConfigError (empty when nothing)."""
    try:
        return [] if pd.Timedelta(value) > pd.Timedelta(0) else [f"{field} {value!r} (a positive duration)"]
    except ValueError:
        return [f"{field} {value!r} (a duration such as '{example}')"]


@dataclass(frozen=True)
class JumpRule:
    """A sudden jump: one reading far from the median of the patient's previous readings.

    Attributes:
        rule_id: stable id, quoted in alerts and advice.
        parameter: canonical parameter.
        min_change: clinically meaningful difference from the rolling median (canonical unit).
        robust_sds: the difference must also exceed this many robust SDs (strictly).
        history: how many previous readings form the rolling median.
        min_history: fewer previous readings than this and the reading is not checked.
        lookback: previous readings older than this do not count (a change over months is
            not sudden; the shift rules cover it).
        spread_floor: smallest robust SD used (a reading's precision).
        severity: severity at ``min_change``; one level higher at twice ``min_change``.
        why: the clinical reason for ``min_change``.
        activity_steps: a rise with at least this many steps recorded in the
            ``activity_window`` before it is activity, not an alert (0: never).
        activity_window: how far back the steps count, e.g. ``"10min"``.
    """

    rule_id: str
    parameter: str
    min_change: float
    spread_floor: float
    robust_sds: float = 3.5
    history: int = 10
    min_history: int = 5
    lookback: str = "14D"
    severity: str = "medium"
    why: str = ""
    activity_steps: float = 0.0
    activity_window: str = "10min"

    def __post_init__(self) -> None:
        problems = []
        if self.activity_steps < 0:
            problems.append(f"activity_steps {self.activity_steps!r} (0 to turn it off, or a positive count)")
        problems += _duration_problems("activity_window", self.activity_window, "10min")
        if not self.min_change > 0 or not self.spread_floor > 0 or not self.robust_sds > 0:
            problems.append(f"min_change {self.min_change!r}, spread_floor {self.spread_floor!r} and robust_sds "
                            f"{self.robust_sds!r} (all positive)")
        if not 1 <= self.min_history <= self.history:
            problems.append(f"min_history {self.min_history!r} (1 to history={self.history})")
        if self.severity not in SEVERITIES:
            problems.append(f"severity {self.severity!r} (use one of {', '.join(SEVERITIES)})")
        problems += _duration_problems("lookback", self.lookback, "14D")
        if problems:
            raise ConfigError(f"a valid jump rule {self.rule_id!r}", "; ".join(problems), "fix those fields")

    def describe(self) -> str:
        return (f"{NAMES.get(self.parameter, self.parameter)} reading at least "
                f"{_amount(self.min_change, self.parameter)} and more than {self.robust_sds:g} robust SDs away from "
                f"the median of the previous {self.history} readings (within {self.lookback})")


# One rule per parameter family. The numbers are screening heuristics, each with its reason.
SHIFT_RULES: tuple[ShiftRule, ...] = (
    ShiftRule(
        "hr_resting_up", "heart_rate", "Resting heart rate", "up", 10.0, daily="p10",
        why="A resting heart rate about 10 /min above the person's own baseline for several days accompanies "
            "infection (wearable studies of influenza-like illness and COVID-19), dehydration, anaemia, "
            "overtraining and heart-failure decompensation; day-to-day variation is a few beats. Resting rate is "
            "approximated by the day's 10th-percentile reading: the public exports carry no resting-rate field, "
            "the minimum is too sensitive to one low glitch, and a spot-check day's single reading is its own "
            "10th percentile."),
    ShiftRule(
        "steps_down", "steps", "Daily steps", "down", 0.30, relative=True, daily="sum", ignore_zero_days=True,
        why="A sustained fall in daily activity is an early, non-specific sign of illness, pain, low mood or "
            "heart-failure progression. Relative, because step counts differ tenfold between people; 30 % is "
            "more than most people's usual week-to-week variation. Days with 0 steps are taken as the tracker not being "
            "worn, which would otherwise fake a fall."),
    ShiftRule(
        "sleep_down", "sleep_minutes", "Sleep", "down", 60.0, daily="sum",
        why="About an hour less sleep a night, sustained for a week, is a change patients notice and that "
            "sleep-restriction studies link to worse mood, glucose control and blood pressure; it can also signal "
            "pain, nocturia or breathlessness lying flat. Naps and split sleep add up to the day's total."),
    ShiftRule(
        "spo2_down", "spo2", "SpO2", "down", 3.0, severity="medium",
        why="Pulse oximeters are accurate to about 2-3 points, so a sustained fall of 3 points or more in the "
            "person's own saturation is beyond device noise; it is a common home-monitoring trigger in COPD and "
            "interstitial lung disease for an exacerbation review."),
    ShiftRule(
        "weight_gain_3d", "weight", "Weight", "up", 2.0, recent_days=1, baseline_days=3, baseline_stat="min",
        min_recent_days=1, min_baseline_days=1, severity="medium",
        why="A gain of 2 kg or more within 3 days is the common heart-failure self-monitoring rule of thumb for "
            "fluid retention (patients are told to contact their heart-failure team); fat cannot be gained that "
            "fast. Compared with the lowest weight of the 3 days before, so a gain spread over those days counts."),
)

JUMP_RULES: tuple[JumpRule, ...] = (
    JumpRule("hr_jump", "heart_rate", 25.0, SPREAD_FLOORS["heart_rate"],
             why="25 /min is wider than the 20 /min NEWS2 heart-rate bands above 90 and beyond the rise of "
                 "standing up; a new arrhythmia, fever, bleeding or pain moves it this much. Not during activity: "
                 "500 steps in 10 minutes is walking (brisk walking is about 100 steps a minute), and a wearable "
                 "sees the heart rate rise with every walk, from its first minutes, and fall back when it ends.",
             activity_steps=500.0),
    JumpRule("sbp_jump", "systolic_bp", 30.0, SPREAD_FLOORS["systolic_bp"],
             why="30 mmHg is well beyond visit-to-visit variability (about 10-15 mmHg); a fall from the 120s or "
                 "lower crosses NEWS2 systolic bands (10 mmHg wide under 111); a fall suggests bleeding, sepsis or over-treatment, a "
                 "rise a hypertensive urgency."),
    JumpRule("spo2_jump", "spo2", 4.0, SPREAD_FLOORS["spo2"],
             why="4 points is beyond the oximeter's 2-3 point accuracy and can move a patient across two NEWS2 SpO2 bands."),
    JumpRule("temp_jump", "temperature", 1.0, SPREAD_FLOORS["temperature"],
             why="1.0 °C above a person's own level is a fever in someone who runs cool, beyond circadian swing "
                 "(about 0.5 °C)."),
    JumpRule("rr_jump", "respiration_rate", 6.0, SPREAD_FLOORS["respiration_rate"],
             why="Respiration rate is often the first vital sign to move; 6 /min is two thirds of the whole 12-20 "
                 "normal band and beyond counting error."),
)
DEFAULT_RULES: tuple[ShiftRule | JumpRule, ...] = SHIFT_RULES + JUMP_RULES


def detect_alerts(vitals: pd.DataFrame, *, now: str | pd.Timestamp | None = None,
                  rules: Iterable[ShiftRule | JumpRule] = DEFAULT_RULES) -> AlertReport:
    """Sustained shifts and sudden jumps in each patient's vitals; see the module docstring.

    Args:
        vitals: the long table (:data:`healthmon.vitals.ingest.COLUMNS`), any number of patients.
        now: evaluation time; readings after it are ignored. Default: the latest usable
            reading in ``vitals`` (deterministic, unlike the wall clock). A naive time is UTC.
        rules: shift and jump rules to run.

    Returns:
        An :class:`AlertReport`: alerts sorted by time, and why any rule could not be checked.
    """
    frame = _normalised(vitals)
    if frame.empty:
        return AlertReport((), (), None if now is None else _utc(now))
    if now is None:
        # Only artefacts: still say, per rule, that nothing could be checked.
        now = frame.loc[frame["usable"], "time"].max() if frame["usable"].any() else frame["time"].max()
    now = _utc(now)
    frame = frame[frame["time"] <= now]
    clean = frame[frame["usable"]]
    artefacts: dict[str, dict[str, int]] = {}
    for (parameter, patient), count in frame[~frame["usable"]].groupby(["parameter", "patient_id"]).size().items():
        artefacts.setdefault(str(parameter), {})[str(patient)] = int(count)
    alerts: list[Alert] = []
    skipped: list[str] = []
    not_alerted: list[str] = []
    present = set(clean["parameter"]) | set(artefacts)
    steps = clean[clean["parameter"] == "steps"]
    for rule in rules:
        if rule.parameter not in present:
            continue
        readings = clean[clean["parameter"] == rule.parameter]
        patients = sorted(set(readings["patient_id"]) | {p for p, q in artefacts.get(rule.parameter, {}).items() if q})
        for patient in patients:
            own = readings[readings["patient_id"] == patient]
            if own.empty:
                skipped.append(f"{rule.parameter} for {patient}: no usable readings "
                               f"({artefacts[rule.parameter][patient]} artefact(s) left out) ({rule.rule_id})")
                continue
            if isinstance(rule, ShiftRule):
                found, why_not = _shift_alerts(own, rule, patient, now)
            else:
                found, why_not, during_activity = _jump_alerts(own, rule, patient, now,
                                                               steps[steps["patient_id"] == patient])
                not_alerted.extend(during_activity)
            alerts.extend(found)
            if why_not:
                skipped.append(f"{rule.parameter} for {patient}: {why_not} ({rule.rule_id})")
    alerts.sort(key=lambda a: (a.time, a.patient_id, a.parameter, a.rule_id))
    return AlertReport(tuple(alerts), tuple(skipped), now, tuple(not_alerted))


def rolling_baseline(vitals: pd.DataFrame, parameter: str, window: str = "28D", *, sds: float = 3.0,
                     min_readings: int = 3, spread: bool = True) -> pd.DataFrame:
    """Each patient's usual range of one parameter, reading by reading, for drawing as a band.

    The baseline at a reading is the median of that patient's readings in the ``window``
    before it (the reading itself excluded, so a spike cannot widen its own band); ``low`` /
    ``high`` are ``sds`` robust SDs either side (1.4826 x MAD, floored by
    :data:`SPREAD_FLOORS`). Artefacts are left out. Fewer than ``min_readings`` readings in the
    window: baseline, low and high are NaN. ``spread=False`` leaves low and high NaN: the rolling
    MAD is a Python call per reading over its whole window (about a minute for a month of
    minute readings), where the rolling median alone takes milliseconds.

    Returns:
        Columns patient_id, time, value, baseline, low, high, n (readings in the window),
        sorted by patient and time.
    """
    columns = ["patient_id", "time", "value", "baseline", "low", "high", "n"]
    frame = _normalised(vitals)
    clean = frame[frame["usable"] & (frame["parameter"] == parameter)]
    floor = SPREAD_FLOORS.get(parameter, 0.0)
    parts = []
    for patient in sorted(set(clean["patient_id"])):
        own = clean[clean["patient_id"] == patient][["patient_id", "time", "value"]].reset_index(drop=True)
        rolling = own.rolling(window, on="time", closed="left")["value"]
        n = rolling.count()
        baseline = rolling.median()
        enough = n >= min_readings
        own["baseline"] = baseline.where(enough)
        own["low"] = own["high"] = np.nan
        if spread:
            mad = rolling.apply(lambda w: float(np.median(np.abs(w - np.median(w)))), raw=True)
            robust_sd = np.maximum(MAD_TO_SD * mad, floor)
            own["low"] = (baseline - sds * robust_sd).where(enough)
            own["high"] = (baseline + sds * robust_sd).where(enough)
        own["n"] = n.fillna(0).astype(int)
        parts.append(own)
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def news2_alerts(news2: pd.DataFrame) -> tuple[Alert, ...]:
    """NEWS2 time points that call for an urgent response, as alerts shaped like the trend alerts.

    ``news2`` is :func:`healthmon.vitals.series.news2_over_time`'s frame. A row fires when its
    band is ``medium`` (5-6) or ``high`` (7+), or it has a red flag (3 points in one
    parameter, the RCP "low-medium" urgent ward-based review). Severity: ``high`` for the high
    band, ``medium`` otherwise (the RCP asks for urgent review for both a total of 5-6 and a
    single red-flag parameter). Consecutive firing scores of one patient under the same rule
    are one episode, one alert (a 48 h ICU stay would otherwise give dozens): it starts at
    the first score, ``readings`` holds every score of the episode, and the message names
    the vital readings behind the episode's peak score, with their points.

    Returns:
        Alerts sorted by time.
    """
    if news2 is None or len(news2) == 0:
        return ()
    points = [c for c in news2.columns if c.startswith("points_")]
    episodes: list[list[tuple[str, dict]]] = []
    for patient, rows in news2.sort_values(["patient_id", "time"], kind="stable").groupby("patient_id", sort=True):
        previous = None
        for row in rows.to_dict("records"):
            rule_id = _news2_rule(row, points)
            if rule_id is None:
                previous = None
                continue
            if rule_id == previous:
                episodes[-1].append((rule_id, row))
            else:
                episodes.append([(rule_id, row)])
            previous = rule_id
    alerts = [_news2_episode_alert(episode, points) for episode in episodes]
    return tuple(sorted(alerts, key=lambda a: (a.time, a.patient_id)))


NEWS2_RULES = {"news2_high": (7.0, "high", "NEWS2 total 7 or more (RCP 2017 high band)"),
               "news2_medium": (5.0, "medium", "NEWS2 total 5 or 6 (RCP 2017 medium band)"),
               "news2_red_flag": (3.0, "medium", "3 points in a single NEWS2 parameter (RCP 2017 red flag)")}


def _news2_rule(row: dict, points: list[str]) -> str | None:
    band = str(row["band"])
    red = bool(row.get("red_flag")) or any(pd.notna(row[c]) and int(row[c]) == 3 for c in points)
    if band == "high":
        return "news2_high"
    if band == "medium":
        return "news2_medium"
    return "news2_red_flag" if red else None


def _news2_reading(row: dict, points_column: str) -> str:
    """'heart rate 120 /min: 2' -- the reading behind a parameter's points, where known."""
    parameter = points_column.removeprefix("points_")
    name, score = _news2_name(parameter), int(row[points_column])
    source = "on_oxygen" if parameter == "air_or_oxygen" else parameter
    value = row.get(f"value_{source}")
    if value is None or (isinstance(value, float) and math.isnan(value)) or parameter == "air_or_oxygen":
        shown = name
    elif parameter == "consciousness":
        shown = f"consciousness {'ACVPU'[int(value)]}"
    else:
        shown = f"{name} {_quantity(charted_value(parameter, float(value)), parameter)}"
    return f"{shown}: {score}{' (red flag)' if score == 3 else ''}"


def _news2_episode_alert(episode: list[tuple[str, dict]], points: list[str]) -> Alert:
    rule_id, first = episode[0]
    threshold, severity, rule = NEWS2_RULES[rule_id]
    peak = max((row for _, row in episode), key=lambda row: int(row["total"]))
    start, peak_time = _utc(first["time"]), _utc(peak["time"])
    contributors = ", ".join(_news2_reading(peak, c) for c in points if pd.notna(peak[c]) and int(peak[c]) > 0)
    message = f"NEWS2 {int(peak['total'])} ({peak['band']} band) at {_clock(peak_time)}"
    message += f": {contributors}" if contributors else ""
    if len(episode) > 1:
        last = _utc(episode[-1][1]["time"])
        message += f"; {len(episode)} consecutive scores in this range from {_clock(start)} to {_clock(last)}"
    if peak.get("missing"):
        message += f"; partial score, not measured: {str(peak['missing']).replace('_', ' ')}"
    readings = tuple((_utc(row["time"]), float(row["total"])) for _, row in episode)
    return Alert(str(first["patient_id"]), "news2", "news2", "up", severity, start, message + ".", None,
                 float(peak["total"]), None, "points", rule_id, threshold, rule, readings)


def alerts_frame(alerts: Iterable[Alert] | AlertReport) -> pd.DataFrame:
    """Alerts as a table for the dashboard: one row per alert, in the given order.

    ``value`` is the reading at the alert's ``time`` (where a chart marker goes on the
    parameter's line); ``readings`` keeps the tuple, and ``first_reading`` / ``last_reading``
    bound it.
    """
    if isinstance(alerts, AlertReport):
        alerts = alerts.alerts
    columns = ["patient_id", "time", "parameter", "kind", "direction", "severity", "value", "baseline", "current",
               "change", "unit", "rule_id", "threshold", "message", "n_readings", "first_reading", "last_reading",
               "readings"]
    rows = []
    for alert in alerts:
        at_time = [v for t, v in alert.readings if t == alert.time]
        rows.append({"patient_id": alert.patient_id, "time": alert.time, "parameter": alert.parameter,
                     "kind": alert.kind, "direction": alert.direction, "severity": alert.severity,
                     "value": at_time[0] if at_time else alert.current, "baseline": alert.baseline,
                     "current": alert.current, "change": alert.change, "unit": alert.unit, "rule_id": alert.rule_id,
                     "threshold": alert.threshold, "message": alert.message, "n_readings": len(alert.readings),
                     "first_reading": alert.readings[0][0] if alert.readings else pd.NaT,
                     "last_reading": alert.readings[-1][0] if alert.readings else pd.NaT,
                     "readings": alert.readings})
    return pd.DataFrame(rows, columns=columns)


# --- sustained shifts -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Day:
    day: pd.Timestamp
    value: float
    readings: tuple[tuple[pd.Timestamp, float], ...]  # the input rows behind the day's value


def _daily(own: pd.DataFrame, rule: ShiftRule) -> list[_Day]:
    days = []
    ordered = own.sort_values(["time", "value"], kind="stable")
    for day, rows in ordered.groupby(ordered["time"].dt.floor("D"), sort=True):
        if rule.daily == "sum":
            value = float(rows["value"].sum())
            picked = rows
        else:
            # A lower quantile is one of the day's own readings, so the alert can point at it.
            by_value = rows.sort_values(["value", "time"], kind="stable")
            q = 0.1 if rule.daily == "p10" else 0.5
            picked = by_value.iloc[[math.floor(q * (len(by_value) - 1))]]
            value = float(picked["value"].iloc[0])
        if rule.ignore_zero_days and value == 0:
            continue
        days.append(_Day(day, value, tuple(zip(picked["time"], picked["value"].astype(float)))))
    return days


def _windows(days: list[_Day], end: pd.Timestamp, rule: ShiftRule) -> tuple[list[_Day], list[_Day], int]:
    """(recent days, baseline days, all days up to ``end``); ``days`` is sorted by day."""
    recent_start = end - pd.Timedelta(days=rule.recent_days - 1)
    baseline_start = recent_start - pd.Timedelta(days=rule.baseline_days)
    stop = bisect_right(days, end, key=lambda d: d.day)
    middle = bisect_left(days, recent_start, key=lambda d: d.day)
    start = bisect_left(days, baseline_start, key=lambda d: d.day)
    return days[middle:stop], days[start:middle], stop


def _why_not_checkable(days: list[_Day], end: pd.Timestamp, rule: ShiftRule) -> str | None:
    recent, baseline, up_to_end = _windows(days, end, rule)
    if len(baseline) < rule.min_baseline_days:
        return (f"{up_to_end} day(s) of data up to {end:%Y-%m-%d}; the {rule.baseline_days}-day baseline before "
                f"the last {rule.recent_days} day(s) has {len(baseline)}, the baseline needs "
                f"{rule.min_baseline_days}")
    if len(recent) < rule.min_recent_days:
        return (f"{len(recent)} day(s) of data in the {rule.recent_days} day(s) to {end:%Y-%m-%d}, the check needs "
                f"{rule.min_recent_days}")
    return None


def _shift_alerts(own: pd.DataFrame, rule: ShiftRule, patient: str, now: pd.Timestamp
                  ) -> tuple[list[Alert], str | None]:
    days = _daily(own, rule)
    alerts: list[Alert] = []
    firing_before = False
    for day in days:
        alert = None
        if _why_not_checkable(days, day.day, rule) is None:
            alert = _shift_check(days, day.day, rule, patient)
        # A run of consecutive firing days is one episode, reported on its first day.
        if alert is not None and not firing_before:
            alerts.append(alert)
        firing_before = alert is not None
    return alerts, _why_not_checkable(days, now.floor("D"), rule)


def _shift_check(days: list[_Day], end: pd.Timestamp, rule: ShiftRule, patient: str) -> Alert | None:
    recent, baseline_days, _ = _windows(days, end, rule)
    # The middle day, and with an even count the one nearer the baseline: averaging the middle
    # two would let 2 raised days of 4 fire a shift; this way a majority of the days must move.
    ordered = sorted(d.value for d in recent)
    current = float(ordered[(len(ordered) - 1) // 2] if rule.direction == "up" else ordered[len(ordered) // 2])
    baseline_values = [d.value for d in baseline_days]
    baseline = float({"median": np.median, "min": np.min, "max": np.max}[rule.baseline_stat](baseline_values))
    if rule.relative and baseline <= 0:
        return None  # a relative change from nothing is meaningless
    change = current - baseline
    toward = change if rule.direction == "up" else -change
    size = toward / baseline if rule.relative else toward
    if size < rule.change - TOLERANCE:
        return None
    readings = tuple(r for d in recent for r in d.readings)
    severity = _escalate(rule.severity, size >= 2 * rule.change - TOLERANCE)
    unit = UNITS.get(rule.parameter, "")
    side = "above" if change > 0 else "below"
    recent_phrase = f" {rule.recent_days}-day median" if rule.recent_days > 1 else ""
    if 1 < len(recent) < rule.recent_days:
        recent_phrase += f" ({len(recent)} days with readings)"
    amount = _amount(abs(change), rule.parameter)
    if rule.relative:
        amount = f"{abs(change) / baseline:.0%} ({amount})"
    first, last = recent[0].day, recent[-1].day
    span = f"reading {first:%Y-%m-%d}" if first == last else f"readings {first:%Y-%m-%d}..{last:%Y-%m-%d}"
    message = (f"{rule.label}{recent_phrase} {_quantity(current, rule.parameter)} is {amount} {side} "
               f"{_baseline_phrase(rule)} of {_quantity(baseline, rule.parameter)} ({span}).")
    return Alert(patient, rule.parameter, "sustained_shift", rule.direction, severity, readings[-1][0], message,
                 baseline, current, change, unit, rule.rule_id, rule.change, rule.describe(), readings)


def _baseline_phrase(rule: ShiftRule) -> str:
    if rule.baseline_stat == "median":
        return f"the {rule.baseline_days}-day baseline"
    extreme = "lowest" if rule.baseline_stat == "min" else "highest"
    return f"the {extreme} of the previous {rule.baseline_days} days"


# --- sudden jumps -----------------------------------------------------------------------------

def _timed_steps(steps: pd.DataFrame) -> pd.DataFrame | None:
    """The patient's step readings if they are counts over short intervals (at least hourly);
    ``None`` for daily totals, whose timestamp says nothing about when the walking was."""
    if len(steps) < 2:
        return None
    ordered = steps.sort_values("time", kind="stable")
    spacing = ordered["time"].diff().dropna()
    return ordered if spacing.median() <= pd.Timedelta("1h") else None


def _jump_alerts(own: pd.DataFrame, rule: JumpRule, patient: str, now: pd.Timestamp, steps: pd.DataFrame
                 ) -> tuple[list[Alert], str | None, list[str]]:
    ordered = own.sort_values("time", kind="stable")
    times = list(ordered["time"])
    values = [float(v) for v in ordered["value"]]
    fired: list[tuple[int, float, float, float]] = []  # (index, median, robust SD, difference)
    medians, spreads, enough = _earlier_medians(ordered["time"], np.asarray(values, dtype=float), rule)
    checked = int(enough.sum())
    for index in np.flatnonzero(enough):
        median, spread = float(medians[index]), max(float(spreads[index]), rule.spread_floor)
        difference = values[index] - median
        if abs(difference) > rule.robust_sds * spread and abs(difference) >= rule.min_change - TOLERANCE:
            fired.append((int(index), median, spread, difference))
    fired, during_activity = _set_aside_activity(fired, times, values, rule, patient, steps)
    why_not = None
    if not checked:
        why_not = (f"{len(values)} reading(s) up to {now:%Y-%m-%d}, a sudden-jump check needs {rule.min_history} "
                   f"earlier ones within {rule.lookback}")
    alerts = []
    unit = UNITS.get(rule.parameter, "")
    name = NAMES.get(rule.parameter, rule.parameter)
    for episode in _episodes(fired):
        index, median, spread, difference = episode[0]
        value, time = values[index], times[index]
        biggest = max(abs(h[3]) for h in episode)
        severity = _escalate(rule.severity, biggest >= 2 * rule.min_change - TOLERANCE)
        message = (f"{name} {_quantity(value, rule.parameter)} at {_clock(time)} is "
                   f"{_amount(abs(difference), rule.parameter)} {'above' if difference > 0 else 'below'} the median "
                   f"of the previous readings, {_quantity(median, rule.parameter)} ({abs(difference) / spread:.1f} "
                   f"robust SDs; the rule needs {_amount(rule.min_change, rule.parameter)} and more than "
                   f"{rule.robust_sds:g})")
        if len(episode) > 1:
            message += f"; {len(episode)} consecutive readings to {_clock(times[episode[-1][0]])}"
        readings = tuple((times[h[0]], values[h[0]]) for h in episode)
        alerts.append(Alert(patient, rule.parameter, "sudden_jump", "up" if difference > 0 else "down", severity,
                            time, message + ".", median, value, difference, unit, rule.rule_id, rule.min_change,
                            rule.describe(), readings))
    return alerts, why_not, during_activity


def _window_starts(times: pd.Series | list[pd.Timestamp], rule: JumpRule) -> np.ndarray:
    """For each reading (sorted by time), the index of the first reading its median is taken over:
    the up to ``rule.history`` readings before it within ``rule.lookback``, which, the readings
    being sorted, are a run ending just before it."""
    stamps = pd.DatetimeIndex(times)
    return np.maximum(np.arange(len(stamps)) - rule.history,
                      stamps.searchsorted(stamps - pd.Timedelta(rule.lookback), side="left"))


def _earlier_medians(times: pd.Series, values: np.ndarray, rule: JumpRule) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each reading (sorted by time): the median of the up to ``rule.history`` readings before
    it that lie within ``rule.lookback``, their robust SD (1.4826 x MAD, not yet floored), and
    whether there were ``rule.min_history`` of them. All readings at once, as one array of
    windows: a Python loop per reading took seconds for a month of minute readings."""
    count, history = len(values), rule.history
    positions = np.arange(count)
    first = _window_starts(times, rule)
    enough = positions - first >= rule.min_history
    medians = np.full(count, np.nan)
    spreads = np.full(count, np.nan)
    if enough.any():
        # windows[i] holds the ``history`` values before reading i (NaN before the first reading);
        # those before ``first`` are blanked.
        padded = np.concatenate([np.full(history, np.nan), values])
        windows = np.lib.stride_tricks.sliding_window_view(padded, history)[:count][enough].copy()
        offsets = np.arange(history)[None, :] + (positions[enough] - history)[:, None]
        windows[offsets < first[enough][:, None]] = np.nan
        medians[enough] = np.nanmedian(windows, axis=1)
        spreads[enough] = MAD_TO_SD * np.nanmedian(np.abs(windows - medians[enough][:, None]), axis=1)
    return medians, spreads, enough


def _episodes(fired: list[tuple[int, float, float, float]]) -> list[list[tuple[int, float, float, float]]]:
    """Consecutive firing readings in one direction are one episode: a jump that holds for a few
    readings (until the rolling median catches up) is still one event."""
    episodes: list[list[tuple[int, float, float, float]]] = []
    for hit in fired:
        if episodes and hit[0] == episodes[-1][-1][0] + 1 and (hit[3] > 0) == (episodes[-1][-1][3] > 0):
            episodes[-1].append(hit)
        else:
            episodes.append([hit])
    return episodes


def _set_aside_activity(fired: list[tuple[int, float, float, float]], times: list[pd.Timestamp],
                        values: list[float], rule: JumpRule, patient: str, steps: pd.DataFrame
                        ) -> tuple[list[tuple[int, float, float, float]], list[str]]:
    """Rises with ``rule.activity_steps`` or more steps in the window before them are taken
    out of ``fired``; each is named in a sentence instead. So are the readings of a rise that
    began with a walk: walking at the rule's pace (50 steps a minute for 500 in 10 minutes) since
    the reading before its first, in a walk that reached the rule's steps within the window from
    there (the heart rate rises in a walk's first minutes, before 500 steps are behind it), unless
    it is too big for a walk's start (3 NEWS2 points, or twice the rule's amount). A rise that
    began at rest stays alerted even if a walk follows. A fall is set aside only as recovery:
    most of the readings its median came from were taken while walking (so that median was the
    walk's, not the patient's resting value), it ends less than the rule's amount below the
    patient's resting level before the walk, the reading before it is within the window, the
    walking has stopped (fewer steps since that reading than the rule's pace, 50 a minute for 500
    in 10 minutes), and it falls into the parameter's NEWS2 zero-point band (51-90 /min for heart
    rate). A fall out of that band, during a walk, or not straight after one is alerted. Both
    walk rules need steps counted at least as often as the window (a minute export, not hourly
    totals), and both look at steps after the reading: a reading at the very end of an upload
    can be alerted and then set aside once the next minutes' steps arrive."""
    timed = _timed_steps(steps) if rule.activity_steps > 0 else None
    if timed is None:
        return fired, []
    window, lookback = pd.Timedelta(rule.activity_window), pd.Timedelta(rule.lookback)
    step_times, step_counts = list(timed["time"]), [float(v) for v in timed["value"]]
    step_every = timed["time"].diff().median()
    fine = step_every <= window  # when the walking was, to within the window

    def walked_between(start: pd.Timestamp, end: pd.Timestamp) -> float:  # steps stamped in (start, end]
        return sum(step_counts[bisect_right(step_times, start):bisect_right(step_times, end)])

    def walked_up_to(time: pd.Timestamp) -> float:  # the walking that led up to a reading
        return walked_between(time - window, time)

    def walking(index: int) -> bool:
        """At the rule's pace since the reading before (none at the same time), judged over one
        step interval at least: 5 steps stamped in the 5 seconds before a reading are not a walk."""
        since = times[index] - times[index - 1]
        span = max(since, step_every)
        return since > pd.Timedelta(0) and walked_between(times[index] - span, times[index]) >= (
            rule.activity_steps * (span / window))

    # A rise's readings in a walk's first window are judged with their episode: the steps of the
    # walk it began with, over the window from the reading before it (the walk's start, as far as
    # the readings can tell). Later readings of the episode need their own steps before them: a
    # rate still high after the walk is poor recovery, not the walk.
    reached = {hit[0]: walked_between(times[start - 1], times[start - 1] + window)
               for episode in (_episodes(fired) if fine else []) if episode[0][3] > 0
               and (start := episode[0][0]) > 0 and walking(start)
               for hit in episode if times[hit[0]] <= times[start - 1] + window}

    def alarming(index: int, difference: float) -> bool:
        """Too big for a walk's start: 3 NEWS2 points (131 /min and over), or twice the rule's
        amount (the rule's own step to high severity). An exertional arrhythmia looks like this."""
        return (scored and band_points(rule.parameter, values[index]) == 3) or (
            abs(difference) >= 2 * rule.min_change - TOLERANCE)

    starts = _window_starts(times, rule)  # the readings each median is taken over: starts[i] to i

    def recovered(index: int) -> bool:
        """Most of the readings behind the median were taken walking, and the fall ends less than
        the rule's amount below the patient's level before the walk (the median of the resting
        readings before it began): a fall below that is not recovery, whatever came before it."""
        behind = range(starts[index], index)
        if 2 * sum(j > 0 and walking(j) for j in behind) <= len(behind):
            return False
        start = index - 1
        while start > 0 and not walking(start):  # back to the walk's last reading
            start -= 1
        while start > 0 and walking(start):  # and to the reading before it began
            start -= 1
        # The readings taken at rest before it, up to the rule's history and look-back: an earlier
        # walk (a stop of a few minutes between two) is not the level. Bounded, so intervals of
        # walking cannot make the search long.
        before, j = [], start
        while j >= 0 and len(before) < rule.history and start - j < 6 * rule.history and (
                times[j] >= times[start + 1] - lookback):
            if j == 0 or not walking(j):
                before.append(values[j])
            j -= 1
        return len(before) >= rule.min_history and (
            float(np.median(before)) - values[index] < rule.min_change - TOLERANCE)

    scored = rule.parameter in NEWS2_BANDS
    kept, during_activity = [], []
    name = NAMES.get(rule.parameter, rule.parameter)
    for hit in fired:
        index, median, _, difference = hit
        time = times[index]
        walked = walked_up_to(time)
        said = (f"{name} {_quantity(values[index], rule.parameter)} at {_clock(time)} for {patient}: "
                f"{_amount(abs(difference), rule.parameter)} {'above' if difference > 0 else 'below'} the median of "
                f"the previous readings, {_quantity(median, rule.parameter)}")
        if difference > 0 and walked >= rule.activity_steps:
            during_activity.append(
                f"{said}, with {walked:.0f} steps in the {rule.activity_window} before it: activity, not alerted "
                f"(the rule sets aside rises with {rule.activity_steps:.0f} or more steps) ({rule.rule_id})")
        elif difference > 0 and reached.get(index, 0.0) >= rule.activity_steps and not alarming(index, difference):
            during_activity.append(
                f"{said}, at the start of a walk of {reached[index]:.0f} steps in its first {rule.activity_window}: "
                f"activity, not alerted (the rule sets aside rises with {rule.activity_steps:.0f} or more steps) "
                f"({rule.rule_id})")
        elif (difference < 0 and fine and scored and band_points(rule.parameter, values[index]) == 0
              and pd.Timedelta(0) < times[index] - times[index - 1] <= window
              and (walked_before := walked_up_to(times[index - 1])) >= rule.activity_steps
              and not walking(index) and recovered(index)):
            low, high = zero_point_band(rule.parameter)
            during_activity.append(
                f"{said}, the previous reading taken with {walked_before:.0f} steps in the {rule.activity_window} "
                f"before it: recovery after activity into the NEWS2 zero-point band ({low:g}-{high:g}), not alerted "
                f"({rule.rule_id})")
        else:
            kept.append(hit)
    return kept, during_activity


# --- helpers ----------------------------------------------------------------------------------

def _normalised(vitals: pd.DataFrame) -> pd.DataFrame:
    """The columns this module needs, time as UTC, sorted, and ``usable`` = not an artefact and not NaN."""
    missing = [c for c in REQUIRED if c not in vitals.columns]
    if missing:
        raise IngestError(f"the long vitals table (columns {', '.join(REQUIRED)})",
                          f"columns {', '.join(map(str, vitals.columns)) or '(none)'}",
                          "read the data with read_vitals_csv / read_fitbit first")
    frame = vitals[list(REQUIRED)].copy()
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    frame["patient_id"] = frame["patient_id"].astype(str)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    frame["usable"] = ~(frame["artefact"].astype(bool) | frame["value"].isna())
    return frame.sort_values(["patient_id", "time"], kind="stable").reset_index(drop=True)


def _utc(time: str | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(time)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _escalate(severity: str, escalate: bool) -> str:
    return SEVERITIES[min(SEVERITIES.index(severity) + 1, len(SEVERITIES) - 1)] if escalate else severity


def _number(value: float, parameter: str) -> str:
    if parameter in ("steps", "sleep_minutes"):
        return f"{value:,.0f}"
    text = f"{value:.1f}"
    return text.removesuffix(".0")


def _quantity(value: float, parameter: str) -> str:
    unit = UNITS.get(parameter, "")
    return f"{_number(value, parameter)} {unit}".rstrip()


def _amount(value: float, parameter: str) -> str:
    """A difference: SpO2 differences are percentage points, not percent."""
    return f"{_number(value, parameter)} points" if parameter == "spo2" else _quantity(value, parameter)


def _clock(time: pd.Timestamp) -> str:
    return f"{time:%Y-%m-%d %H:%M} UTC"


NEWS2_NAMES = {"respiration_rate": "respiration rate", "spo2": "SpO2", "air_or_oxygen": "supplemental oxygen",
               "systolic_bp": "systolic BP", "heart_rate": "heart rate", "consciousness": "consciousness",
               "temperature": "temperature"}


def _news2_name(points_column: str) -> str:
    return NEWS2_NAMES.get(points_column, points_column.replace("_", " "))
