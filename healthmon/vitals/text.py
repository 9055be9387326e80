"""A window of vitals (and labs, where there are any) as one short sentence, so the text
classifier can learn from, score and explain device data: its attributions then point at
words such as "high" (above the reference range), "low" (below it), "normal" (within it) or
"very high"/"very low" (in the band clinical scores give the most points).

    "heart rate median 104 /min, high, rising, latest 135, very high; SpO2 median 93 %, low;
     GCS lowest 3, very low, latest 15, normal; ..."

The sentence is written from a small table of numbers (:func:`window_features`) and from
nothing else, so a baseline model can be given exactly the information the text carries
(the PhysioNet benchmark fits a logistic regression on these numbers). The same window
always gives the same text. Artefacts are never summarised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from healthmon.errors import HealthmonError
from healthmon.model.lineage import lineage, load_examples
from healthmon.vitals.news2 import news2_band
from healthmon.vitals.parameters import UNITS


@dataclass(frozen=True)
class Measure:
    """One phrase of the sentence: which parameter, which statistic and its reference range.

    ``statistic`` is ``median`` (with a trend when there are enough readings, and the latest
    value where that is in another band than the median), ``min`` or
    ``max`` (the worst value of a lab, "lowest"/"highest", followed by the latest value where
    that is in another band) or ``rate`` (a volume per hour, e.g. urine output). The words
    "very low"/"low"/"normal"/"high"/"very high" are judged on the printed value against
    ``very_low`` < ``low`` and ``high`` < ``very_high``. ``always_latest`` says the latest
    value of a worst-value lab even where it is in the same band as the worst.
    ``only_if_abnormal`` makes a phrase for a second direction of the same lab (white cells'
    lowest beside their highest): said only where that value is outside the range, and without
    a latest value, which the lab's first phrase already says.
    """

    parameter: str
    words: str
    unit: str
    statistic: str
    low: float | None = None
    high: float | None = None
    decimals: int | None = None  # None: whole numbers from 50 up, one decimal below
    very_low: float | None = None
    very_high: float | None = None
    always_latest: bool = False  # say the latest value even where it is in the worst value's band
    only_if_abnormal: bool = False  # a second direction of a lab already in the sentence


# Device and bedside vitals. Ranges: the NEWS2 zero-point bands for heart rate, SpO2,
# respiration and temperature, and its 3-point bands (2 for a high temperature) for "very";
# for blood pressure the NEWS2 zero-point floor (111) and 3-point band (<= 90) with the
# hypertension threshold (139/89) and the ACC/AHA crisis (> 180/120) above; for glucose the
# fasting range, ADA level-2 hypoglycaemia (< 54) and the inpatient treatment threshold (>= 180);
# adult activity/sleep guidance otherwise. A graded word carries what a linear reading of the
# number cannot: risk rises steeply at the extremes, and in both directions for most vitals.
VITALS = (
    Measure("heart_rate", "heart rate", UNITS["heart_rate"], "median", 51, 90, very_low=41, very_high=130),
    Measure("systolic_bp", "systolic BP", UNITS["systolic_bp"], "median", 111, 139, very_low=91, very_high=180),
    Measure("diastolic_bp", "diastolic BP", UNITS["diastolic_bp"], "median", 60, 89, very_high=120),
    Measure("spo2", "SpO2", UNITS["spo2"], "median", 96, 100, very_low=92),
    Measure("respiration_rate", "respiration rate", UNITS["respiration_rate"], "median", 12, 20, very_low=9,
            very_high=24),
    Measure("temperature", "temperature", UNITS["temperature"], "median", 36.1, 38.0, very_low=35.1, very_high=39.0),
    Measure("glucose", "glucose", UNITS["glucose"], "median", 70, 125, very_low=54, very_high=179),
    Measure("weight", "weight", UNITS["weight"], "median"),
    Measure("steps", "daily steps", UNITS["steps"], "median", 5000, None),
    Measure("sleep_minutes", "sleep", UNITS["sleep_minutes"], "median", 420, 540),
)
# ICU labs (PhysioNet 2012 names, read as ``lab:NAME``): the worst value over the window,
# then the latest where it differs (a GCS of 3 under sedation after surgery that is 15 by the
# end of the window is a different patient from one still at 3), against common adult
# reference ranges. "Very": GCS <= 8 (severe), lactate >= 4 (Surviving Sepsis), SAPS II's
# highest-point bands for BUN (>= 84 mg/dL), bicarbonate (< 15), bilirubin (>= 6) and sodium
# (< 125), and its bands for white cells (>= 20 and < 1); SOFA's 3-point bands for creatinine
# (>= 3.5) and platelets (< 50); pH < 7.2, PaO2 < 60 mmHg (respiratory failure), FiO2 > 0.6,
# haematocrit < 21 % (haemoglobin ~7 g/dL), albumin < 2.5 g/dL, potassium > 6.
# White cells are abnormal both ways (reference 4-11; SIRS counts < 4 as well as > 12): the
# highest is always said and the lowest where it is low, since a maximum hides leukopenia, which
# in sepsis carries a higher mortality than a raised count. Both phrases judge against both
# limits, so one count is never "normal" in one phrase and "low" in the other.
# Urine output is a rate: KDIGO's 0.5 and 0.3 mL/kg/h for a 70 kg adult (35 and 21 mL/h).
# GCS and urine output are the strongest single mortality signals in this data set, so they
# come first. GCS's latest value is always said: within one band it still separates a patient
# who woke (lowest 3, latest 8; lowest 9, latest 14) from one who did not, and it is the number
# that adds most to a logistic regression on these features (PhysioNet splits 2 and 3: AUROC
# 0.767 -> 0.823 and 0.807 -> 0.843 with it).
# One set of low limits for both white-cell phrases, so they cannot drift apart.
_WHITE_CELLS_LOW = {"low": 4.0, "very_low": 1.0}
LABS = (
    Measure("lab:GCS", "GCS", "", "min", 15, None, very_low=9, always_latest=True),
    Measure("lab:Urine", "urine output", "mL/h", "rate", 35, None, very_low=21),
    Measure("lab:Lactate", "lactate", "", "max", None, 2.0, very_high=3.9),
    Measure("lab:BUN", "BUN", "", "max", None, 20, very_high=83),
    Measure("lab:Creatinine", "creatinine", "", "max", None, 1.2, very_high=3.4),
    Measure("lab:HCO3", "bicarbonate", "", "min", 22, None, very_low=15),
    Measure("lab:pH", "pH", "", "min", 7.35, None, decimals=2, very_low=7.2),
    Measure("lab:PaO2", "PaO2", "", "min", 80, None, very_low=60),
    Measure("lab:FiO2", "FiO2", "", "max", None, 0.21, very_high=0.6),
    Measure("lab:WBC", "white cells", "", "max", high=11, very_high=19.9, **_WHITE_CELLS_LOW),
    Measure("lab:WBC", "white cells", "", "min", only_if_abnormal=True, **_WHITE_CELLS_LOW),
    Measure("lab:Platelets", "platelets", "", "min", 150, None, very_low=50),
    Measure("lab:HCT", "haematocrit", "", "min", 36, None, very_low=21),
    Measure("lab:Bilirubin", "bilirubin", "", "max", None, 1.2, very_high=5.9),
    Measure("lab:Albumin", "albumin", "", "min", 3.5, None, very_low=2.5),
    Measure("lab:Na", "sodium", "", "min", 135, None, very_low=125),
    Measure("lab:K", "potassium", "", "max", None, 5.0, very_high=6.0),
)
MEASURES = VITALS + LABS
# SpO2 for a patient with a prescribed 88-92 % target (NEWS2 scale 2; RCP 2017, chart 2): the
# target is "normal", so 89 % is not called low while NEWS2 scores it 0. Below 84 scores 3 points
# ("very low"). Above 92 scores points only on supplemental oxygen (over-oxygenation risks
# hypercapnia; 97 and above scores 3), and 0 on air, where it is not called high.
SPO2_SCALE2_ON_OXYGEN = Measure("spo2", "SpO2", UNITS["spo2"], "median", 88, 92, very_low=84, very_high=96)
SPO2_SCALE2_ON_AIR = Measure("spo2", "SpO2", UNITS["spo2"], "median", 88, None, very_low=84)
SPO2_TARGET_PHRASE = "SpO2 target 88-92 %"  # said on scale 2, so the sentence explains its own "normal"
ICU_TYPES = {1: "coronary care unit", 2: "cardiac surgery recovery unit", 3: "medical ICU", 4: "surgical ICU"}
TREND_MIN_READINGS = 4
TREND_FRACTION = 0.05  # halves whose medians differ by more than 5 % of the median are a trend


def _statistics(values: pd.Series, times: pd.Series, measure: Measure) -> dict[str, float]:
    key = measure.parameter
    if measure.statistic == "median":
        # The range is left out: its numbers cost ~40 tokens a summary that the classifier
        # reads poorly; the NEWS2 maximum (one total, at its worst time point) and the trend
        # word carry part of what it said about the worst heart rate, BP, SpO2 and temperature.
        stats = {f"{key}.median": float(values.median()), f"{key}.count": float(len(values))}
        if len(values) > 1:
            stats[f"{key}.latest"] = float(values.iloc[-1])
        if len(values) >= TREND_MIN_READINGS:
            half = len(values) // 2
            first, last = float(values.iloc[:half].median()), float(values.iloc[half:].median())
            spread = max(abs(stats[f"{key}.median"]) * TREND_FRACTION, 1e-9)
            stats[f"{key}.trend"] = 1.0 if last - first > spread else -1.0 if first - last > spread else 0.0
        return stats
    if measure.statistic == "rate":
        # Each reading is the volume since the one before, so the interval of the first (and of
        # any reading at the same time) is unknown: the rate is what came after it over the
        # hours it covers. A total over an arbitrary window (the old "1,500 mL") meant different
        # things for 6 h and 48 h. Charting that stops early only shortens the hours covered;
        # a volume that was never charted dilutes the rate, and nothing here can tell.
        hours = (times.iloc[-1] - times.iloc[0]).total_seconds() / 3600
        later = values[(times > times.iloc[0]).to_numpy()]
        return {f"{key}.rate": float(later.sum() / hours)} if hours > 0 else {}
    reduce = {"min": values.min, "max": values.max}[measure.statistic]
    return {f"{key}.{measure.statistic}": float(reduce()), f"{key}.latest": float(values.iloc[-1])}


def window_features(vitals: pd.DataFrame, *, descriptors: dict[str, float] | None = None,
                    news2: pd.DataFrame | None = None, spo2_scale: int = 1) -> dict[str, float]:
    """The numbers the sentence is written from; a feature that was not measured is absent.

    ``descriptors`` (PhysioNet's Age, Gender, ICUType) and ``news2`` (rows of
    :func:`healthmon.vitals.series.news2_over_time`) are optional. ``spo2_scale`` 2 (a
    prescribed 88-92 % target) is recorded as ``spo2_scale``, with the latest air/oxygen
    reading as ``on_oxygen.latest``; scale 1 adds nothing, so sentences written before the
    scale was known are unchanged.
    """
    clean = vitals[~vitals["artefact"].astype(bool)].dropna(subset=["value"]).sort_values("time", kind="stable")
    groups = dict(tuple(clean.groupby("parameter", sort=False)))
    by_parameter = {name: group["value"] for name, group in groups.items()}
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
            features.update(_statistics(by_parameter[measure.parameter], groups[measure.parameter]["time"], measure))
    if "consciousness" in by_parameter:
        features["consciousness.worst"] = float(by_parameter["consciousness"].max())
    if "lab:MechVent" in by_parameter:
        features["ventilated"] = float(by_parameter["lab:MechVent"].max() > 0)
    if "on_oxygen" in by_parameter:
        features["on_oxygen"] = float(by_parameter["on_oxygen"].max() > 0)
    if spo2_scale == 2:
        features["spo2_scale"] = 2.0
        if "on_oxygen" in by_parameter:
            # Which scale-2 words apply depends on the oxygen now, as NEWS2's latest score does:
            # a patient back on air at 96 % is not "high".
            features["on_oxygen.latest"] = float(by_parameter["on_oxygen"].iloc[-1] > 0)
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
    # One or two words each: every word costs training and attribution time on long ICU summaries.
    if measure.very_low is not None and value < measure.very_low:
        return ", very low"
    if measure.low is not None and value < measure.low:
        return ", low"
    if measure.very_high is not None and value > measure.very_high:
        return ", very high"
    if measure.high is not None and value > measure.high:
        return ", high"
    return ", normal" if measure.low is not None or measure.high is not None else ""


def _phrase(features: dict[str, float], measure: Measure) -> str | None:
    key, unit = measure.parameter, f" {measure.unit}" if measure.unit else ""
    if measure.statistic == "rate":
        value = features.get(f"{key}.rate")
        if value is None:
            return None
        shown = _fmt(value, measure.decimals)
        return f"{measure.words} {shown}{unit}{_judgement(float(shown), measure)}"
    if measure.statistic != "median":
        value = features.get(f"{key}.{measure.statistic}")
        if value is None:
            return None
        word = {"min": "lowest", "max": "highest"}[measure.statistic]
        shown = _fmt(value, measure.decimals)
        band = _judgement(float(shown), measure)
        if measure.only_if_abnormal and band == ", normal":
            return None
        phrase = f"{measure.words} {word} {shown}{unit}{band}"
        latest = features.get(f"{key}.latest")
        if latest is not None and not measure.only_if_abnormal:
            now = _fmt(latest, measure.decimals)
            # Only where the latest value is in another band than the worst: that is the news
            # (recovered, or still deteriorating), and it keeps long ICU summaries short.
            if measure.always_latest or _judgement(float(now), measure) != band:
                phrase += f", latest {now}{_judgement(float(now), measure)}"
        return phrase
    median = features.get(f"{key}.median")
    if median is None:
        return None
    shown = _fmt(median, measure.decimals)
    phrase = f"{measure.words} median {shown}{unit}"
    band = _judgement(float(shown), measure)  # judged as printed: "90 /min, high" would contradict itself
    trend = features.get(f"{key}.trend", 0.0)
    phrase += band + (", rising" if trend > 0 else ", falling" if trend < 0 else "")
    latest = features.get(f"{key}.latest")
    if latest is not None:
        now = _fmt(latest, measure.decimals)
        now_band = _judgement(float(now), measure)
        # A median hides the reading that matters most where it differs: a week at 71 /min ending
        # at 128 is not "heart rate 71, normal" (NEWS2, too, scores the latest value). Said only
        # where the latest is in another band, as for the labs.
        if now_band != band:
            phrase += f", latest {now}{now_band}"
    return phrase


def _age_band(age: float) -> str:
    # In words as well as the number: ICU mortality climbs with age, and a band is one token
    # the classifier can weigh where "84" is a number it has to learn to read.
    return "young adult" if age < 45 else "middle-aged" if age < 65 else "older" if age < 80 else "elderly"


def features_text(features: dict[str, float]) -> str:
    """The sentence for :func:`window_features`' numbers (every number in it comes from there)."""
    phrases = []
    if "age" in features:
        who = f"age {features['age']:.0f}, {_age_band(round(features['age']))}"  # banded as printed
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
    scale_2 = features.get("spo2_scale") == 2
    spo2 = SPO2_SCALE2_ON_OXYGEN if features.get("on_oxygen.latest") else SPO2_SCALE2_ON_AIR
    for measure in MEASURES:
        on_target = scale_2 and measure.parameter == "spo2"
        phrase = _phrase(features, spo2 if on_target else measure)
        if phrase:
            # The target stands beside the value it explains, and is absent without one.
            phrases += [SPO2_TARGET_PHRASE, phrase] if on_target else [phrase]
    return "; ".join(phrases) + "." if phrases else "no usable vitals."


def summarise_vitals(vitals: pd.DataFrame, *, descriptors: dict[str, float] | None = None,
                     news2: pd.DataFrame | None = None, spo2_scale: int = 1) -> str:
    """One patient's window of vitals (the long table) as text; see the module docstring.
    ``spo2_scale`` 2 judges SpO2 against the prescribed 88-92 % target and says so."""
    return features_text(window_features(vitals, descriptors=descriptors, news2=news2, spo2_scale=spo2_scale))


# The leads every phrase of the sentence above starts with. A text is a summary only if every
# "; "-separated phrase starts with one of them: a clinical note that happens to say
# "potassium highest 5.9" has other phrases too, and is not counted as one. Sentences written
# before 2026-11-29 gave urine output as a total ("urine output total 6500 mL, normal"); they
# still count, or a version trained on them would be shown as having seen no summary.
_MEASURE_LEAD = re.compile(
    r"(?:" + "|".join(re.escape(m.words) for m in MEASURES if m.statistic != "rate")
    + r") (?:median|highest|lowest) -?\d|urine output (?:\d[\d.]* mL/h|total \d[\d.]* mL)(?:,|$)"
)
_OTHER_LEAD = re.compile(
    r"age \d+(?:,|$)|NEWS2 max \d+ \(|consciousness [ACVPU] at worst$|"
    r"mechanically ventilated$|on supplemental oxygen$|" + re.escape(SPO2_TARGET_PHRASE) + r"$|(?:" + "|".join(re.escape(t) for t in ICU_TYPES.values()) + r")$"
)


def summary_phrases(text: str) -> list[str]:
    """The phrases of :func:`features_text`'s sentence (joined with "; ", ended with ".")."""
    return text.removesuffix(".").split("; ")


def looks_like_vitals_summary(text: str) -> bool:
    """Whether ``text`` is :func:`features_text`'s sentence rather than a clinical note."""
    if text == "no usable vitals.":
        return True
    if not text.endswith("."):
        return False
    phrases = summary_phrases(text)
    measured = [_MEASURE_LEAD.match(p) is not None for p in phrases]
    if not all(m or _OTHER_LEAD.match(p) for m, p in zip(measured, phrases)):
        return False
    return any(measured) or any(p.startswith(("age ", "NEWS2 ")) for p in phrases)


def summaries_in_training_data(version_dir: str | Path) -> int | None:
    """How many vitals summaries a model version learned from, its ancestors' training data
    included (a retrained version starts from its parent's weights); None where any of that
    data was not stored or cannot be read. A model that saw none scores a summary without
    having learned to read one (demo models built before 2026-11-29, see
    ``healthmon.demo.demo_notes``), and the Vitals page says so."""
    try:
        return sum(looks_like_vitals_summary(text)
                   for folder, _ in lineage(Path(version_dir)) for text, _ in load_examples(folder, "train"))
    except (HealthmonError, OSError, ValueError, KeyError, TypeError):  # a lineage that loops is a ModelError
        return None
