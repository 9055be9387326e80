"""Sudden jumps: each reading against the median of the patient's previous readings, walks set aside.

See :class:`~healthmon.vitals.alert_rules.JumpRule` for the rule and
:mod:`healthmon.vitals.trends` for how the detectors are run.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
import pandas as pd

from healthmon.vitals.alert_rules import MAD_TO_SD, TOLERANCE, JumpRule
from healthmon.vitals.alerts import NAMES, Alert, escalated, format_amount, format_clock, format_quantity
from healthmon.vitals.news2 import NEWS2_BANDS, band_points, zero_point_band
from healthmon.vitals.parameters import UNITS


def _timed_steps(steps: pd.DataFrame) -> pd.DataFrame | None:
    """The patient's step readings if they are counts over short intervals (at least hourly);
    ``None`` for daily totals, whose timestamp says nothing about when the walking was."""
    if len(steps) < 2:
        return None
    ordered = steps.sort_values("time", kind="stable")
    spacing = ordered["time"].diff().dropna()
    return ordered if spacing.median() <= pd.Timedelta("1h") else None


def jump_alerts(own: pd.DataFrame, rule: JumpRule, patient: str, now: pd.Timestamp, steps: pd.DataFrame
                 ) -> tuple[list[Alert], str | None, list[str]]:
    """One patient's sudden jumps under one rule.

    Args:
        own: the patient's usable readings of ``rule.parameter`` up to ``now``.
        steps: the patient's usable step readings, for setting aside rises during activity.

    Returns:
        (alerts, why the rule could not be checked as of ``now`` or None, sentences naming the
        readings set aside as activity or recovery).
    """
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
        severity = escalated(rule.severity, biggest >= 2 * rule.min_change - TOLERANCE)
        message = (f"{name} {format_quantity(value, rule.parameter)} at {format_clock(time)} is "
                   f"{format_amount(abs(difference), rule.parameter)} {'above' if difference > 0 else 'below'} the "
                   f"median of the previous readings, {format_quantity(median, rule.parameter)} "
                   f"({abs(difference) / spread:.1f} robust SDs; the rule needs "
                   f"{format_amount(rule.min_change, rule.parameter)} and more than {rule.robust_sds:g})")
        if len(episode) > 1:
            message += f"; {len(episode)} consecutive readings to {format_clock(times[episode[-1][0]])}"
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
        said = (f"{name} {format_quantity(values[index], rule.parameter)} at {format_clock(time)} for {patient}: "
                f"{format_amount(abs(difference), rule.parameter)} {'above' if difference > 0 else 'below'} the "
                f"median of the previous readings, {format_quantity(median, rule.parameter)}")
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
