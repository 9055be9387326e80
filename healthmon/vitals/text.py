"""A window of vitals (and labs, where there are any) as one short sentence, so the text
classifier can learn from, score and explain device data: its attributions then point at
words such as "high" (above the reference range), "low" (below it) or "normal" (within it).

    "heart rate median 104 /min (88-131), high; SpO2 median 93 % (90-95), low; ..."

The sentence is written from a small table of numbers (:func:`window_features`) and from
nothing else, so a baseline model can be given exactly the information the text carries
(the PhysioNet benchmark fits a logistic regression on these numbers). The same window
always gives the same text. Artefacts are never summarised.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from healthmon.vitals.ingest import UNITS
from healthmon.vitals.news2 import news2_band


@dataclass(frozen=True)
class Measure:
    """One phrase of the sentence: which parameter, which statistic and its reference range.

    ``statistic`` is ``median`` (written with the min-max range and a trend when there are
    enough readings), ``min`` or ``max`` (the worst value of a lab, "lowest"/"highest") or
    ``sum`` (e.g. urine output over the window). The words "low"/"high"/"normal" are
    judged on that statistic against ``low``/``high``.
    """

    parameter: str
    words: str
    unit: str
    statistic: str
    low: float | None = None
    high: float | None = None
    decimals: int | None = None  # None: whole numbers from 50 up, one decimal below


# Device and bedside vitals. Ranges: the NEWS2 zero-point bands for heart rate, SpO2,
# respiration and temperature; for blood pressure the NEWS2 zero-point floor (111) with the
# hypertension threshold (139/89) above; fasting glucose and adult activity/sleep guidance otherwise.
VITALS = (
    Measure("heart_rate", "heart rate", UNITS["heart_rate"], "median", 51, 90),
    Measure("systolic_bp", "systolic BP", UNITS["systolic_bp"], "median", 111, 139),
    Measure("diastolic_bp", "diastolic BP", UNITS["diastolic_bp"], "median", 60, 89),
    Measure("spo2", "SpO2", UNITS["spo2"], "median", 96, 100),
    Measure("respiration_rate", "respiration rate", UNITS["respiration_rate"], "median", 12, 20),
    Measure("temperature", "temperature", UNITS["temperature"], "median", 36.1, 38.0),
    Measure("glucose", "glucose", UNITS["glucose"], "median", 70, 125),
    Measure("weight", "weight", UNITS["weight"], "median"),
    Measure("steps", "daily steps", UNITS["steps"], "median", 5000, None),
    Measure("sleep_minutes", "sleep", UNITS["sleep_minutes"], "median", 420, 540),
)
# ICU labs (PhysioNet 2012 names, read as ``lab:NAME``): the worst value over the window,
# against common adult reference ranges. GCS and urine output are the strongest single
# mortality signals in this data set, so they come first.
LABS = (
    Measure("lab:GCS", "GCS", "", "min", 15, None),
    Measure("lab:Urine", "urine output", "mL", "sum", 1500, None),
    Measure("lab:Lactate", "lactate", "", "max", None, 2.0),
    Measure("lab:BUN", "BUN", "", "max", None, 20),
    Measure("lab:Creatinine", "creatinine", "", "max", None, 1.2),
    Measure("lab:HCO3", "bicarbonate", "", "min", 22, None),
    Measure("lab:pH", "pH", "", "min", 7.35, None, decimals=2),
    Measure("lab:PaO2", "PaO2", "", "min", 80, None),
    Measure("lab:FiO2", "FiO2", "", "max", None, 0.21),
    Measure("lab:WBC", "white cells", "", "max", None, 11),
    Measure("lab:Platelets", "platelets", "", "min", 150, None),
    Measure("lab:HCT", "haematocrit", "", "min", 36, None),
    Measure("lab:Bilirubin", "bilirubin", "", "max", None, 1.2),
    Measure("lab:Albumin", "albumin", "", "min", 3.5, None),
    Measure("lab:Na", "sodium", "", "min", 135, None),
    Measure("lab:K", "potassium", "", "max", None, 5.0),
)
MEASURES = VITALS + LABS
ICU_TYPES = {1: "coronary care unit", 2: "cardiac surgery recovery unit", 3: "medical ICU", 4: "surgical ICU"}
TREND_MIN_READINGS = 4
TREND_FRACTION = 0.05  # halves whose medians differ by more than 5 % of the median are a trend


def _statistics(values: pd.Series, measure: Measure) -> dict[str, float]:
    key = measure.parameter
    if measure.statistic == "median":
        stats = {f"{key}.median": float(values.median()), f"{key}.min": float(values.min()),
                 f"{key}.max": float(values.max()), f"{key}.count": float(len(values))}
        if len(values) >= TREND_MIN_READINGS:
            half = len(values) // 2
            first, last = float(values.iloc[:half].median()), float(values.iloc[half:].median())
            spread = max(abs(stats[f"{key}.median"]) * TREND_FRACTION, 1e-9)
            stats[f"{key}.trend"] = 1.0 if last - first > spread else -1.0 if first - last > spread else 0.0
        return stats
    reduce = {"min": values.min, "max": values.max, "sum": values.sum}[measure.statistic]
    return {f"{key}.{measure.statistic}": float(reduce())}


def window_features(vitals: pd.DataFrame, *, descriptors: dict[str, float] | None = None,
                    news2: pd.DataFrame | None = None) -> dict[str, float]:
    """The numbers the sentence is written from; a feature that was not measured is absent.

    ``descriptors`` (PhysioNet's Age, Gender, ICUType) and ``news2`` (rows of
    :func:`healthmon.vitals.series.news2_over_time`) are optional.
    """
    clean = vitals[~vitals["artefact"].astype(bool)].dropna(subset=["value"]).sort_values("time", kind="stable")
    by_parameter = {name: group["value"] for name, group in clean.groupby("parameter", sort=False)}
    features: dict[str, float] = {}
    descriptors = descriptors or {}
    if descriptors.get("Age", -1) >= 0:
        features["age"] = float(descriptors["Age"])
    if descriptors.get("Gender") in (0, 1):
        features["female"] = float(descriptors["Gender"] == 0)  # PhysioNet: 0 female, 1 male
    if descriptors.get("ICUType") in ICU_TYPES:
        features["icu_type"] = float(descriptors["ICUType"])
    for measure in MEASURES:
        if measure.parameter in by_parameter:
            features.update(_statistics(by_parameter[measure.parameter], measure))
    if "consciousness" in by_parameter:
        features["consciousness.worst"] = float(by_parameter["consciousness"].max())
    if "lab:MechVent" in by_parameter:
        features["ventilated"] = float(by_parameter["lab:MechVent"].max() > 0)
    if "on_oxygen" in by_parameter:
        features["on_oxygen"] = float(by_parameter["on_oxygen"].max() > 0)
    if news2 is not None and len(news2):
        worst = news2.loc[news2["total"].idxmax()]
        features["news2.max"] = float(worst["total"])
        features["news2.max_red_flag"] = float(bool(worst["red_flag"]))
        features["news2.max_complete"] = float(bool(worst["complete"]))
    return features


def _fmt(value: float, decimals: int | None = None) -> str:
    if decimals is not None:
        return f"{value:.{decimals}f}"
    if abs(value) < 1 and value != round(value):
        return f"{value:.2f}".rstrip("0")  # FiO2 0.35, not 0.3
    return f"{value:.1f}" if abs(value) < 50 and value != round(value) else f"{value:.0f}"


def _judgement(value: float, measure: Measure) -> str:
    # One word each: every word costs training and attribution time on long ICU summaries.
    if measure.low is not None and value < measure.low:
        return ", low"
    if measure.high is not None and value > measure.high:
        return ", high"
    return ", normal" if measure.low is not None or measure.high is not None else ""


def _phrase(features: dict[str, float], measure: Measure) -> str | None:
    key, unit = measure.parameter, f" {measure.unit}" if measure.unit else ""
    if measure.statistic != "median":
        value = features.get(f"{key}.{measure.statistic}")
        if value is None:
            return None
        word = {"min": "lowest", "max": "highest", "sum": "total"}[measure.statistic]
        shown = _fmt(value, measure.decimals)
        return f"{measure.words} {word} {shown}{unit}{_judgement(float(shown), measure)}"
    median = features.get(f"{key}.median")
    if median is None:
        return None
    shown = _fmt(median, measure.decimals)
    phrase = f"{measure.words} median {shown}{unit}"
    if features[f"{key}.min"] != features[f"{key}.max"]:
        phrase += f" ({_fmt(features[f'{key}.min'])}-{_fmt(features[f'{key}.max'])})"
    phrase += _judgement(float(shown), measure)  # judged as printed: "90 /min, high" would contradict itself
    trend = features.get(f"{key}.trend", 0.0)
    return phrase + (", rising" if trend > 0 else ", falling" if trend < 0 else "")


def features_text(features: dict[str, float]) -> str:
    """The sentence for :func:`window_features`' numbers (every number in it comes from there)."""
    phrases = []
    if "age" in features:
        who = f"age {features['age']:.0f}"
        if "female" in features:
            who += ", female" if features["female"] else ", male"
        phrases.append(who)
    if "icu_type" in features:
        phrases.append(ICU_TYPES[int(features["icu_type"])])
    if features.get("ventilated"):
        phrases.append("mechanically ventilated")
    elif features.get("on_oxygen"):
        phrases.append("on supplemental oxygen")
    # The scores first: a long ICU summary may be cut at the model's maximum length.
    if "news2.max" in features:
        band = news2_band(int(features["news2.max"]), red_flag=bool(features.get("news2.max_red_flag")))
        # A score with parameters missing may understate the risk: say so in the sentence.
        partial = "" if features.get("news2.max_complete", 1.0) else ", partial"
        phrases.append(f"NEWS2 max {features['news2.max']:.0f} ({band}{partial})")
    worst = features.get("consciousness.worst", 0.0)
    if worst > 0:
        phrases.append(f"consciousness {'ACVPU'[int(worst)]} at worst")
    phrases += [p for p in (_phrase(features, m) for m in MEASURES) if p]
    return "; ".join(phrases) + "." if phrases else "no usable vitals."


def summarise_vitals(vitals: pd.DataFrame, *, descriptors: dict[str, float] | None = None,
                     news2: pd.DataFrame | None = None) -> str:
    """One patient's window of vitals (the long table) as text; see the module docstring."""
    return features_text(window_features(vitals, descriptors=descriptors, news2=news2))
