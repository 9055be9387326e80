"""Trends and anomalies in a patient's own vitals: rolling baselines, sustained shifts, sudden jumps.

Every check compares a patient with *their own* recent past, never with other patients,
and every :class:`Alert` carries the exact readings that fired it (``readings``), so the
dashboard can mark them on the chart and the clinician can check the arithmetic.

Two kinds of rule, both plain data (:data:`~healthmon.vitals.alert_rules.SHIFT_RULES`,
:data:`~healthmon.vitals.alert_rules.JUMP_RULES`):

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
explained in :mod:`healthmon.vitals.alert_rules`; they are meant to be tuned per programme,
not read as diagnoses. The checks themselves are :mod:`healthmon.vitals.shifts` and
:mod:`healthmon.vitals.jumps`; this module runs them and draws the baseline band.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from healthmon.errors import IngestError
from healthmon.vitals.alert_rules import DEFAULT_RULES, MAD_TO_SD, SPREAD_FLOORS, JumpRule, ShiftRule
from healthmon.vitals.alerts import Alert, AlertReport, as_utc
from healthmon.vitals.jumps import jump_alerts
from healthmon.vitals.shifts import shift_alerts

REQUIRED = ("patient_id", "time", "parameter", "value", "artefact")


def detect_alerts(vitals: pd.DataFrame, *, now: str | pd.Timestamp | None = None,
                  rules: Iterable[ShiftRule | JumpRule] = DEFAULT_RULES) -> AlertReport:
    """Sustained shifts and sudden jumps in each patient's vitals; see the module docstring.

    Args:
        vitals: the long table (:data:`healthmon.vitals.parameters.COLUMNS`), any number of patients.
        now: evaluation time; readings after it are ignored. Default: the latest usable
            reading in ``vitals`` (deterministic, unlike the wall clock). A naive time is UTC.
        rules: shift and jump rules to run.

    Returns:
        An :class:`AlertReport`: alerts sorted by time, and why any rule could not be checked.
    """
    frame = _normalised(vitals)
    if frame.empty:
        return AlertReport((), (), None if now is None else as_utc(now))
    if now is None:
        # Only artefacts: still say, per rule, that nothing could be checked.
        now = frame.loc[frame["usable"], "time"].max() if frame["usable"].any() else frame["time"].max()
    now = as_utc(now)
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
                found, why_not = shift_alerts(own, rule, patient, now)
            else:
                found, why_not, during_activity = jump_alerts(own, rule, patient, now,
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
