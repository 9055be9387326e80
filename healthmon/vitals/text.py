"""A window of vitals as one short sentence, so the text classifier can learn from, score
and explain device data (its attributions then point at words such as "above range").

    "heart rate median 104 /min (88-131), above range; SpO2 median 93 % (90-95), below range; ..."

Every phrase comes from the numbers with fixed rules (below): the same window always gives
the same text. Artefacts are never summarised.
"""

from __future__ import annotations

import pandas as pd

from healthmon.vitals.ingest import UNITS

# Reference ranges used for the words "below range" / "above range": the NEWS2 zero-point
# bands for the NEWS2 parameters; fasting-glucose and adult activity/sleep guidance otherwise.
RANGES = {"heart_rate": (51, 90), "respiration_rate": (12, 20), "spo2": (96, 100), "systolic_bp": (111, 139),
          "diastolic_bp": (60, 89), "temperature": (36.1, 38.0), "glucose": (70, 125), "steps": (5000, None),
          "sleep_minutes": (420, 540)}
NAMES = {"heart_rate": "heart rate", "systolic_bp": "systolic BP", "diastolic_bp": "diastolic BP", "spo2": "SpO2",
         "respiration_rate": "respiration rate", "temperature": "temperature", "glucose": "glucose",
         "weight": "weight", "steps": "daily steps", "sleep_minutes": "sleep"}
ORDER = list(NAMES)


def _fmt(value: float) -> str:
    return f"{value:.1f}" if abs(value) < 50 and value != round(value) else f"{value:.0f}"


def summarise_vitals(vitals: pd.DataFrame, *, news2: pd.DataFrame | None = None) -> str:
    """One patient's window of vitals (the long table) as text; see the module docstring."""
    clean = vitals[~vitals["artefact"]].dropna(subset=["value"])
    phrases = []
    for parameter in ORDER:
        values = clean.loc[clean["parameter"] == parameter, "value"]
        if values.empty:
            continue
        median = float(values.median())
        phrase = f"{NAMES[parameter]} median {_fmt(median)} {UNITS[parameter]}"
        if len(values) > 1:
            phrase += f" ({_fmt(float(values.min()))}-{_fmt(float(values.max()))})"
        low, high = RANGES.get(parameter, (None, None))
        if low is not None and median < low:
            phrase += ", below range"
        elif high is not None and median > high:
            phrase += ", above range"
        elif low is not None or high is not None:
            phrase += ", in range"
        if len(values) >= 4:
            half = len(values) // 2
            first, last = float(values.iloc[:half].median()), float(values.iloc[half:].median())
            spread = max(abs(median) * 0.05, 1e-9)
            if last - first > spread:
                phrase += ", rising"
            elif first - last > spread:
                phrase += ", falling"
        phrases.append(phrase)
    consciousness = clean.loc[clean["parameter"] == "consciousness", "value"]
    if not consciousness.empty and consciousness.max() > 0:
        phrases.append(f"consciousness {'ACVPU'[int(consciousness.max())]} at worst")
    oxygen = clean.loc[clean["parameter"] == "on_oxygen", "value"]
    if not oxygen.empty and oxygen.max() > 0:
        phrases.append("on supplemental oxygen")
    if news2 is not None and len(news2):
        worst = news2.loc[news2["total"].idxmax()]
        phrases.append(f"NEWS2 max {int(worst['total'])} ({worst['band']})")
    return "; ".join(phrases) + "." if phrases else "no usable vitals."
