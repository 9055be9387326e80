"""Sustained shifts: daily values of a patient's readings, recent days against their own baseline.

See :class:`~healthmon.vitals.alert_rules.ShiftRule` for the rule and
:mod:`healthmon.vitals.trends` for how the detectors are run.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

import numpy as np
import pandas as pd

from healthmon.vitals.alert_rules import TOLERANCE, ShiftRule, baseline_phrase
from healthmon.vitals.alerts import Alert, escalated, format_amount, format_quantity
from healthmon.vitals.parameters import UNITS


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


def shift_alerts(own: pd.DataFrame, rule: ShiftRule, patient: str, now: pd.Timestamp
                  ) -> tuple[list[Alert], str | None]:
    """One patient's sustained shifts under one rule: one alert per run of firing days, at its first.

    Returns:
        (alerts, why the rule cannot be checked as of ``now``'s day, or None).
    """
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
    severity = escalated(rule.severity, size >= 2 * rule.change - TOLERANCE)
    unit = UNITS.get(rule.parameter, "")
    side = "above" if change > 0 else "below"
    recent_phrase = f" {rule.recent_days}-day median" if rule.recent_days > 1 else ""
    if 1 < len(recent) < rule.recent_days:
        recent_phrase += f" ({len(recent)} days with readings)"
    amount = format_amount(abs(change), rule.parameter)
    if rule.relative:
        amount = f"{abs(change) / baseline:.0%} ({amount})"
    first, last = recent[0].day, recent[-1].day
    span = f"reading {first:%Y-%m-%d}" if first == last else f"readings {first:%Y-%m-%d}..{last:%Y-%m-%d}"
    message = (f"{rule.label}{recent_phrase} {format_quantity(current, rule.parameter)} is {amount} {side} "
               f"{baseline_phrase(rule)} of {format_quantity(baseline, rule.parameter)} ({span}).")
    return Alert(patient, rule.parameter, "sustained_shift", rule.direction, severity, readings[-1][0], message,
                 baseline, current, change, unit, rule.rule_id, rule.change, rule.describe(), readings)
