"""NEWS2, the National Early Warning Score 2 (Royal College of Physicians, 2017), table-driven.

The chart is data (:data:`NEWS2_BANDS`): each parameter is a list of bands, each band an
inclusive upper bound and its points, read top to bottom. Observations are rounded to
the chart's own precision first (whole numbers; temperature to 0.1 °C), so a value that
falls between two printed bands (a heart rate of 50.4 from an average) lands where the
charted observation would.

Missing parameters are allowed: the score then covers what was measured, says which
parameters are missing and is marked incomplete, because a partial NEWS2 can only
under-state risk. NEWS2 is an adult acute-care score; computed from a wearable at home
it is labelled as applied outside its setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from healthmon.errors import HealthmonError
from healthmon.vitals.parameters import acvpu_letter

INF = math.inf


class VitalsError(HealthmonError):
    """A vital-sign value or option healthmon cannot score."""


# (inclusive upper bound, points), in order. Source: RCP NEWS2 chart 1 (2017).
NEWS2_BANDS: dict[str, tuple[tuple[float, int], ...]] = {
    "respiration_rate": ((8, 3), (11, 1), (20, 0), (24, 2), (INF, 3)),
    "spo2_scale1": ((91, 3), (93, 2), (95, 1), (INF, 0)),
    # Scale 2 (prescribed target 88-92%, e.g. hypercapnic respiratory failure): on air,
    # 88% and above score 0; on oxygen, saturations above the target score again.
    "spo2_scale2_air": ((83, 3), (85, 2), (87, 1), (INF, 0)),
    "spo2_scale2_oxygen": ((83, 3), (85, 2), (87, 1), (92, 0), (94, 1), (96, 2), (INF, 3)),
    "systolic_bp": ((90, 3), (100, 2), (110, 1), (219, 0), (INF, 3)),
    "heart_rate": ((40, 3), (50, 1), (90, 0), (110, 1), (130, 2), (INF, 3)),
    "temperature": ((35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1), (INF, 2)),
}
OXYGEN_POINTS = 2
ACVPU = {"A": 0, "C": 3, "V": 3, "P": 3, "U": 3}  # new confusion, voice, pain, unresponsive: 3
DECIMALS = {"temperature": 1}  # every other parameter is charted in whole numbers
# Physically possible ranges: outside them a value is an error, not a score.
PLAUSIBLE = {"respiration_rate": (0, 80), "spo2": (0, 100), "systolic_bp": (30, 300), "heart_rate": (10, 300),
             "temperature": (25.0, 45.0)}

# RCP NEWS2 chart 3 (clinical response) and chart 4 (monitoring frequency).
RESPONSES = {
    "low (0)": ("Continue routine NEWS monitoring.", "minimum every 12 hours"),
    "low": ("Inform the registered nurse, who must assess the patient and decide whether monitoring should be more "
            "frequent and/or care escalated.", "minimum every 4-6 hours"),
    "low-medium": ("Registered nurse to inform the medical team caring for the patient, who will review and decide "
                   "whether escalation of care is necessary.", "minimum every hour"),
    "medium": ("Registered nurse to inform the medical team immediately and request urgent assessment by a clinician "
               "or team competent in the care of acutely ill patients; care in an environment with monitoring "
               "facilities.", "minimum every hour"),
    "high": ("Registered nurse to inform the medical team immediately (at least specialist registrar level); "
             "emergency assessment by a team with critical-care competencies, including advanced airway skills; "
             "consider transfer to a level 2 or 3 care facility (HDU or ICU).", "continuous monitoring"),
}


def news2_band(total: int, *, red_flag: bool) -> str:
    """The RCP response band: 7+ high, 5-6 medium, 3 in a single parameter low-medium, else low."""
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    return "low-medium" if red_flag else "low"


def charted_value(parameter: str, value: float) -> float:
    """A value as it is written on the chart and scored: rounded half up to the chart's precision
    (35.05 °C is charted 35.1; Python's round() would send 50.5 to 50). Every sentence that names
    a scored value shows this, so the value and its points never disagree."""
    places = DECIMALS.get(parameter.split("_scale")[0], 0)
    return float(Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def band_points(parameter: str, value: float) -> int:
    """Points of one value on one chart row (after rounding to the chart's precision)."""
    rounded = charted_value(parameter, value)
    for upper, points in NEWS2_BANDS[parameter]:
        if rounded <= upper:
            return points
    raise AssertionError("the last band is unbounded")  # pragma: no cover


def zero_point_band(row: str) -> tuple[float, float]:
    """The lowest and highest charted values a chart row scores 0 for: (88, 92) for SpO2 scale 2
    on oxygen, the prescribed target."""
    step = 10.0 ** -DECIMALS.get(row.split("_scale")[0], 0)
    below = -INF
    for upper, points in NEWS2_BANDS[row]:
        if points == 0:
            return below + step, upper
        below = upper
    raise AssertionError(f"{row} has no zero-point band")  # pragma: no cover


@dataclass(frozen=True)
class News2:
    """A NEWS2 score with its working shown.

    Attributes:
        total: aggregate score over the parameters present.
        points: parameter -> points (only those measured).
        band: ``low`` / ``low-medium`` / ``medium`` / ``high`` (RCP clinical risk).
        response / monitoring: the RCP chart's clinical response and minimum frequency.
        missing: parameters not measured (the score is then ``complete=False``).
        scale: the SpO2 scale used (1 or 2).
        caveat: why the score should be read with care (partial data, home setting).
    """

    total: int
    points: dict[str, int]
    band: str
    response: str
    monitoring: str
    missing: tuple[str, ...]
    scale: int
    caveat: str = ""
    values: dict[str, object] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def red_flag(self) -> bool:
        """A score of 3 in any single parameter (the RCP low-medium trigger)."""
        return any(p == 3 for p in self.points.values())


def _check(name: str, value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    low, high = PLAUSIBLE[name]
    if not low <= value <= high:
        raise VitalsError(f"a {name.replace('_', ' ')} between {low} and {high}", repr(value),
                          "check the unit (temperature in °C, SpO2 in %) or drop the artefact before scoring")
    return float(value)


def score_news2(
    *,
    respiration_rate: float | None = None,
    spo2: float | None = None,
    on_oxygen: bool | None = None,
    systolic_bp: float | None = None,
    heart_rate: float | None = None,
    consciousness: str | None = None,
    temperature: float | None = None,
    spo2_scale: int = 1,
    setting: str = "hospital",
) -> News2:
    """NEWS2 for one set of observations; see the module docstring.

    Args:
        on_oxygen: supplemental oxygen (scores 2); None = not recorded.
        consciousness: ACVPU letter (A, C, V, P or U).
        spo2_scale: 1 (default) or 2 for patients with a prescribed 88-92% target.
        setting: ``hospital`` or ``home`` (home readings get the out-of-setting caveat).
    """
    if spo2_scale not in (1, 2):
        raise VitalsError("SpO2 scale 1 or 2", repr(spo2_scale), "use scale 2 only for a prescribed 88-92% target")
    if setting not in ("hospital", "home"):
        raise VitalsError("setting 'hospital' or 'home'", repr(setting), "pick one of those")
    values = {"respiration_rate": _check("respiration_rate", respiration_rate), "spo2": _check("spo2", spo2),
              "systolic_bp": _check("systolic_bp", systolic_bp), "heart_rate": _check("heart_rate", heart_rate),
              "temperature": _check("temperature", temperature)}
    points: dict[str, int] = {}
    for name in ("respiration_rate", "systolic_bp", "heart_rate", "temperature"):
        if values[name] is not None:
            points[name] = band_points(name, values[name])
    if values["spo2"] is not None:
        if spo2_scale == 1:
            row = "spo2_scale1"
        else:
            # On scale 2 the oxygen rows apply only when oxygen is known to be given.
            row = "spo2_scale2_oxygen" if on_oxygen else "spo2_scale2_air"
        points["spo2"] = band_points(row, values["spo2"])
    if on_oxygen is not None:
        points["air_or_oxygen"] = OXYGEN_POINTS if on_oxygen else 0
    if consciousness is not None:
        letter = acvpu_letter(str(consciousness))  # "agitated" is not A: new confusion scores 3
        if letter not in ACVPU:
            raise VitalsError("a consciousness level among A, C, V, P, U (ACVPU)", repr(consciousness),
                              "record Alert, new Confusion, responds to Voice, to Pain, or Unresponsive")
        points["consciousness"] = ACVPU[letter]
    expected = ("respiration_rate", "spo2", "air_or_oxygen", "systolic_bp", "heart_rate", "consciousness", "temperature")
    missing = tuple(p for p in expected if p not in points)
    total = sum(points.values())
    band = news2_band(total, red_flag=any(p == 3 for p in points.values()))
    response, monitoring = RESPONSES["low (0)" if band == "low" and total == 0 else band]
    caveats = []
    if missing:
        caveats.append(f"partial score: {', '.join(m.replace('_', ' ') for m in missing)} not measured, so risk may be "
                       "under-stated")
    if spo2_scale == 2 and on_oxygen is None and values["spo2"] is not None:
        # The partial-score caveat names "air or oxygen"; here it also decides SpO2's own points.
        on_air, given_oxygen = band_points("spo2_scale2_air", values["spo2"]), band_points("spo2_scale2_oxygen",
                                                                                            values["spo2"])
        if given_oxygen != on_air:
            caveats.append(f"SpO2 {charted_value('spo2', values['spo2']):.0f} % on scale 2 scores {on_air} on air, as "
                           f"scored here, but {given_oxygen} on oxygen (and oxygen itself {OXYGEN_POINTS}): record air "
                           "or oxygen")
    if setting == "home":
        caveats.append("NEWS2 is an adult acute-care score; here it is applied to home readings, outside the "
                       "setting it was validated in")
    return News2(total, points, band, response, monitoring, missing, spo2_scale, "; ".join(caveats),
                 {**values, "on_oxygen": on_oxygen, "consciousness": consciousness})
