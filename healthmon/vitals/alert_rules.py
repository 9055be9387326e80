"""The trend alert rules as data: the shift and jump rule types, the default tables and the NEWS2 alert rules.

Each rule carries its thresholds and the clinical reason for them (``why``); the tables
(:data:`SHIFT_RULES`, :data:`JUMP_RULES`, :data:`NEWS2_RULES`) are what the detectors run and
what advice rules cite by id. The numbers are screening heuristics, meant to be tuned per
programme, not read as diagnoses.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from healthmon.errors import ConfigError
from healthmon.vitals.alerts import DIRECTIONS, NAMES, SEVERITIES, format_amount

# MAD x 1.4826 estimates the standard deviation of normally distributed data.
MAD_TO_SD = 1.4826

DAILY_AGGREGATES = ("p10", "median", "sum")
BASELINE_STATS = ("median", "min", "max")

# Comparisons are "at least the threshold"; the tolerance keeps a change that is exactly the
# threshold on paper (70 - 60 = 10) from missing it by a floating-point hair.
TOLERANCE = 1e-9

# Floor of the robust SD, about one reading's precision (device resolution / observer rounding).
# Without it a run of identical readings (MAD 0) would make any change "infinitely unusual".
SPREAD_FLOORS = {"heart_rate": 3.0, "systolic_bp": 5.0, "diastolic_bp": 4.0, "spo2": 1.0, "respiration_rate": 1.5,
                 "temperature": 0.2, "weight": 0.3, "glucose": 10.0}


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
        amount = f"{self.change:.0%}" if self.relative else format_amount(self.change, self.parameter)
        recent = f"{self.recent_days}-day median" if self.recent_days > 1 else "daily value"
        side = "above" if self.direction == "up" else "below"
        return f"{self.label} {recent} at least {amount} {side} {baseline_phrase(self)}"


def baseline_phrase(rule: ShiftRule) -> str:
    """What a shift rule compares against, in words: "the 28-day baseline"."""
    if rule.baseline_stat == "median":
        return f"the {rule.baseline_days}-day baseline"
    extreme = "lowest" if rule.baseline_stat == "min" else "highest"
    return f"the {extreme} of the previous {rule.baseline_days} days"


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
                f"{format_amount(self.min_change, self.parameter)} and more than {self.robust_sds:g} robust SDs away "
                f"from the median of the previous {self.history} readings (within {self.lookback})")


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
            "more than most people's usual week-to-week variation. Days with 0 steps are taken as the tracker not "
            "being worn, which would otherwise fake a fall."),
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
                 "lower crosses NEWS2 systolic bands (10 mmHg wide under 111); a fall suggests bleeding, sepsis or "
                 "over-treatment, a rise a hypertensive urgency."),
    JumpRule("spo2_jump", "spo2", 4.0, SPREAD_FLOORS["spo2"],
             why="4 points is beyond the oximeter's 2-3 point accuracy and can move a patient across two NEWS2 SpO2 "
                 "bands."),
    JumpRule("temp_jump", "temperature", 1.0, SPREAD_FLOORS["temperature"],
             why="1.0 °C above a person's own level is a fever in someone who runs cool, beyond circadian swing "
                 "(about 0.5 °C)."),
    JumpRule("rr_jump", "respiration_rate", 6.0, SPREAD_FLOORS["respiration_rate"],
             why="Respiration rate is often the first vital sign to move; 6 /min is two thirds of the whole 12-20 "
                 "normal band and beyond counting error."),
)
DEFAULT_RULES: tuple[ShiftRule | JumpRule, ...] = SHIFT_RULES + JUMP_RULES

# NEWS2 alert rule id -> (threshold, severity, the rule in words); see healthmon.vitals.news2_alerts.
NEWS2_RULES = {"news2_high": (7.0, "high", "NEWS2 total 7 or more (RCP 2017 high band)"),
               "news2_medium": (5.0, "medium", "NEWS2 total 5 or 6 (RCP 2017 medium band)"),
               "news2_red_flag": (3.0, "medium", "3 points in a single NEWS2 parameter (RCP 2017 red flag)")}
