"""The invented patients of the demo notes: conditions, age, cancer site, regimen, history.

A patient is drawn once and may come back for several visits, so every note about them
agrees on who they are (disease duration capped by age, a charted diagnosis matching the
charted BMI).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from healthmon.demo.vocabulary import CANCER_SITES_F, CANCER_SITES_M, OTHER_PMH, REGIMENS, STAGES


@dataclass(frozen=True)
class Patient:
    """One invented patient, the same at every visit."""

    patient_id: str
    conditions: tuple[str, ...]
    age: int
    sex: str  # "F" or "M"
    cancer_site: str | None
    side: str
    stage: str
    regimen: str
    diabetes_type: int
    years_dm: int
    years_htn: int
    bmi: float
    other_pmh: tuple[str, ...]
    smoker: bool


def make_patient(r: random.Random, number: int, conditions: tuple[str, ...]) -> Patient:
    """A new patient ``SYN-P<number>`` with exactly ``conditions``, the rest drawn from ``r``."""
    sex = r.choice(("F", "M"))
    if "cancer" in conditions:
        site: str | None = r.choice(CANCER_SITES_F if sex == "F" else CANCER_SITES_M)
        age = r.randint(38, 86)
    else:
        site = None
        age = r.randint(34, 84) if conditions else r.randint(18, 78)
    dm_type = 1 if "diabetes" in conditions and r.random() < 0.06 else 2
    other_pmh = tuple(r.sample([x for x in OTHER_PMH if sex == "M" or x != "BPH"],
                               r.choice((0, 0, 1, 1, 2, 3))))
    bmi = round(r.uniform(27, 39) if "diabetes" in conditions else r.uniform(19, 31), 1)
    if "HLD" in other_pmh and "hyperlipidemia" in other_pmh:
        other_pmh = tuple(x for x in other_pmh if x != "HLD")  # same diagnosis, listed once
    if "obesity" in other_pmh:
        bmi = round(r.uniform(30.5, 42), 1)  # a charted diagnosis must match the charted BMI
    return Patient(
        patient_id=f"SYN-P{number:04d}",
        conditions=conditions,
        age=age,
        sex=sex,
        cancer_site=site,
        side=r.choice(("L", "R", "left", "right")),
        stage=r.choice(STAGES),
        regimen=r.choice(REGIMENS[site]) if site else "",
        diabetes_type=dm_type,
        # Disease duration is capped by age so no one is "HTN x 23 yrs" at 39.
        years_dm=r.randint(1, max(1, min(22, age - 30))),
        years_htn=r.randint(1, max(1, min(25, age - 30))),
        bmi=bmi,
        other_pmh=other_pmh,
        smoker=r.random() < (0.6 if site == "lung" else 0.2),
    )
