"""Blood-pressure category from averaged readings: ACC/AHA 2017, with ESC/ESH 2018 grades.

ACC/AHA 2017 (Whelton et al., Hypertension 2018;71:e13) stages office readings as normal
(<120 and <80), elevated (120-129 and <80), stage 1 (130-139 or 80-89) and stage 2 (≥140
or ≥90); a reading above 180 and/or above 120 is a hypertensive crisis. Its Table 11 gives
home (and daytime ambulatory) equivalents: 130/80 at home corresponds to stage 1 and
135/85 to stage 2, so home data are staged on those thresholds. The category uses the
mean of the readings given (the guideline asks for ≥2 readings on ≥2 occasions; fewer are
staged but flagged). Cuffless wearable estimates are not staged at all (:data:`CUFFLESS`):
they are not validated for diagnosis, so their mean is shown as a trend and no category,
grade or crisis is derived from it.

ESC/ESH 2018 grades (office): optimal, normal, high normal, grade 1, 2 and 3, and
isolated systolic hypertension.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean
from typing import Iterable

from healthmon.vitals.news2 import VitalsError

# (systolic at or above, diastolic at or above, category), checked from the top: the higher
# of the two pressures decides.
ACC_AHA_OFFICE = ((140, 90, "stage 2 hypertension"), (130, 80, "stage 1 hypertension"))
ACC_AHA_HOME = ((135, 85, "stage 2 hypertension"), (130, 80, "stage 1 hypertension"))
ELEVATED_SYSTOLIC = 120
CRISIS = (180, 120)  # strictly above either
CUFFLESS = "not staged (cuffless estimate: trend only)"


@dataclass(frozen=True)
class BPCategory:
    systolic: float
    diastolic: float
    readings: int
    category: str
    crisis: bool
    setting: str
    guideline: str
    caveat: str = ""
    cuffless: bool = False  # a cuffless wearable's estimates: category CUFFLESS, never a crisis


def average_readings(readings: Iterable[tuple[float, float]]) -> tuple[float, float, int]:
    """Mean systolic and diastolic of (systolic, diastolic) pairs, and how many there were."""
    pairs = list(readings)
    if not pairs:
        raise VitalsError("at least one blood-pressure reading", "none", "measure or upload readings first")
    for systolic, diastolic in pairs:
        if not (40 <= systolic <= 300 and 20 <= diastolic <= 200) or diastolic >= systolic:
            raise VitalsError("a reading with systolic 40-300, diastolic 20-200 and systolic above diastolic",
                              f"{systolic}/{diastolic}", "check the columns are not swapped and drop artefacts")
    return fmean(p[0] for p in pairs), fmean(p[1] for p in pairs), len(pairs)


def classify_bp(readings: Iterable[tuple[float, float]], *, setting: str = "office", cuffless: bool = False) -> BPCategory:
    """The ACC/AHA 2017 category of the averaged readings (home thresholds for ``setting='home'``)."""
    if setting not in ("office", "home"):
        raise VitalsError("setting 'office' or 'home'", repr(setting), "home = self-measured or ambulatory daytime")
    systolic, diastolic, n = average_readings(readings)
    table = ACC_AHA_HOME if setting == "home" else ACC_AHA_OFFICE
    category = next((name for s, d, name in table if systolic >= s or diastolic >= d), None)
    if category is None:
        category = "elevated" if systolic >= ELEVATED_SYSTOLIC else "normal"
    crisis = systolic > CRISIS[0] or diastolic > CRISIS[1]
    if cuffless:
        category, crisis = CUFFLESS, False
    caveats = []
    if n < 2:
        caveats.append("one reading only: the guideline stages the mean of 2 or more readings on 2 or more occasions")
    if cuffless:
        caveats.append("cuffless wearable estimate: use for trends only, not to diagnose or stage hypertension")
    guideline = "ACC/AHA 2017" + (" (home thresholds, Table 11)" if setting == "home" else "")
    return BPCategory(systolic, diastolic, n, category, crisis, setting, guideline, "; ".join(caveats), cuffless)


# ESC/ESH 2018 office grades: (systolic at or above, diastolic at or above, grade), top first.
ESC_GRADES = ((180, 110, "grade 3 hypertension"), (160, 100, "grade 2 hypertension"), (140, 90, "grade 1 hypertension"),
              (130, 85, "high normal"), (120, 80, "normal"))


def esc_grade(readings: Iterable[tuple[float, float]]) -> str:
    """ESC/ESH 2018 grade of the averaged office readings; isolated systolic hypertension named."""
    systolic, diastolic, _ = average_readings(readings)
    grade = next((name for s, d, name in ESC_GRADES if systolic >= s or diastolic >= d), "optimal")
    if systolic >= 140 and diastolic < 90:
        return f"isolated systolic hypertension ({grade})"
    return grade
