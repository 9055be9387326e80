"""NEWS2 scores that call for an urgent response, as alerts shaped like the trend alerts.

One alert per episode of consecutive firing scores (:data:`~healthmon.vitals.alert_rules.NEWS2_RULES`),
naming the vital readings behind the episode's peak score.
"""

from __future__ import annotations

import math

import pandas as pd

from healthmon.vitals.alert_rules import NEWS2_RULES
from healthmon.vitals.alerts import Alert, as_utc, format_clock, format_quantity
from healthmon.vitals.news2 import charted_value


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
        shown = f"{name} {format_quantity(charted_value(parameter, float(value)), parameter)}"
    return f"{shown}: {score}{' (red flag)' if score == 3 else ''}"


def _news2_episode_alert(episode: list[tuple[str, dict]], points: list[str]) -> Alert:
    rule_id, first = episode[0]
    threshold, severity, rule = NEWS2_RULES[rule_id]
    peak = max((row for _, row in episode), key=lambda row: int(row["total"]))
    start, peak_time = as_utc(first["time"]), as_utc(peak["time"])
    contributors = ", ".join(_news2_reading(peak, c) for c in points if pd.notna(peak[c]) and int(peak[c]) > 0)
    message = f"NEWS2 {int(peak['total'])} ({peak['band']} band) at {format_clock(peak_time)}"
    message += f": {contributors}" if contributors else ""
    if len(episode) > 1:
        last = as_utc(episode[-1][1]["time"])
        message += (f"; {len(episode)} consecutive scores in this range from {format_clock(start)} to "
                    f"{format_clock(last)}")
    if peak.get("missing"):
        message += f"; partial score, not measured: {str(peak['missing']).replace('_', ' ')}"
    readings = tuple((as_utc(row["time"]), float(row["total"])) for _, row in episode)
    return Alert(str(first["patient_id"]), "news2", "news2", "up", severity, start, message + ".", None,
                 float(peak["total"]), None, "points", rule_id, threshold, rule, readings)


NEWS2_NAMES = {"respiration_rate": "respiration rate", "spo2": "SpO2", "air_or_oxygen": "supplemental oxygen",
               "systolic_bp": "systolic BP", "heart_rate": "heart rate", "consciousness": "consciousness",
               "temperature": "temperature"}


def _news2_name(points_column: str) -> str:
    return NEWS2_NAMES.get(points_column, points_column.replace("_", " "))
