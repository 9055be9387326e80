"""Alerts as values: what a trend or NEWS2 rule found, with the readings behind it, and how it is worded.

:class:`Alert` and :class:`AlertReport` are what :func:`healthmon.vitals.trends.detect_alerts`
and :func:`healthmon.vitals.news2_alerts.news2_alerts` return; :func:`alerts_frame` is the
dashboard's table of them. The ``format_*`` helpers word numbers, units and times the same
way in every alert message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from healthmon.vitals.parameters import COUNTS, UNITS

SEVERITIES = ("low", "medium", "high")
DIRECTIONS = ("up", "down")

# What each parameter is called in alert messages.
NAMES = {"heart_rate": "Heart rate", "systolic_bp": "Systolic BP", "diastolic_bp": "Diastolic BP", "spo2": "SpO2",
         "respiration_rate": "Respiration rate", "temperature": "Temperature", "steps": "Daily steps",
         "sleep_minutes": "Sleep", "weight": "Weight", "glucose": "Glucose", "news2": "NEWS2"}


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


def as_utc(time: str | pd.Timestamp) -> pd.Timestamp:
    """A time as a UTC timestamp; a naive time is taken to be UTC already."""
    stamp = pd.Timestamp(time)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def escalated(severity: str, escalate: bool) -> str:
    """One severity level up (at most ``high``) when ``escalate``, else ``severity`` as it is."""
    return SEVERITIES[min(SEVERITIES.index(severity) + 1, len(SEVERITIES) - 1)] if escalate else severity


def _number(value: float, parameter: str) -> str:
    if parameter in COUNTS:
        return f"{value:,.0f}"
    text = f"{value:.1f}"
    return text.removesuffix(".0")


def format_quantity(value: float, parameter: str) -> str:
    """A value with its parameter's unit: "72 /min", "10,400 steps"."""
    unit = UNITS.get(parameter, "")
    return f"{_number(value, parameter)} {unit}".rstrip()


def format_amount(value: float, parameter: str) -> str:
    """A difference: SpO2 differences are percentage points, not percent."""
    return f"{_number(value, parameter)} points" if parameter == "spo2" else format_quantity(value, parameter)


def format_clock(time: pd.Timestamp) -> str:
    """A time as alerts write it: "2026-03-01 08:00 UTC"."""
    return f"{time:%Y-%m-%d %H:%M} UTC"
