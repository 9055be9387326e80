"""The FHIR codes healthmon reads, as tables: LOINC vitals, oxygen, ACVPU, units, condition labels.

Which LOINC (or SNOMED CT) code means which healthmon parameter, which units convert to its
canonical unit and how, which statuses mean "not a measurement" or "not on record", and the
rule table that maps a Condition's display to a healthmon label (:func:`condition_label`).
"""

from __future__ import annotations

import re

from healthmon.vitals.parameters import LB_TO_KG, MMOL_TO_MG_DL

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"

# LOINC code -> healthmon parameter (canonical unit in healthmon.vitals.parameters.UNITS).
VITAL_CODES = {
    "8867-4": "heart_rate",
    "8889-8": "heart_rate",  # by pulse oximetry (a wearable's or a finger probe's)
    "9279-1": "respiration_rate",
    "59408-5": "spo2",  # by pulse oximetry
    "2708-6": "spo2",  # arterial; the same parameter, as in the PhysioNet reader
    "8310-5": "temperature",
    # The same temperature taken at a named site; NEWS2 does not distinguish them.
    "8331-1": "temperature",  # oral
    "8328-7": "temperature",  # axillary
    "8333-7": "temperature",  # tympanic membrane
    "8332-9": "temperature",  # rectal
    "8480-6": "systolic_bp",
    "8462-4": "diastolic_bp",
    "29463-7": "weight",
    "2339-0": "glucose",  # blood
    "2345-7": "glucose",  # serum or plasma
    "41950-7": "steps",  # per 24 h
    "55423-8": "steps",  # step count
}
# Supplemental oxygen, the NEWS2 "air or oxygen" row: US Core's pulse-oximetry Observation carries
# these as components. Oxygen is given where the inspired concentration is above room air (21 %)
# or a flow is running. (LOINC code -> (units accepted, lower-cased; above this means oxygen)).
OXYGEN_CODES = {"3150-0": ({"%"}, 21.0), "3151-8": ({"l/min", "l/min{o2}", "litre/min", "liter/min"}, 0.0)}
OXYGEN_NAMES = {"3150-0": "Inhaled oxygen concentration", "3151-8": "Inhaled oxygen flow rate"}
# NEWS2's level of consciousness as UK Core / CareConnect send it: an Observation coded SNOMED CT
# 1104441000000107 (ACVPU scale score) whose valueCodeableConcept is one of the ACVPU value set's
# SNOMED answers. An answer outside the set is read from its text where that names a level
# ("Voice", "new confusion"), else flagged; never guessed from a first letter.
ACVPU_CODE = "1104441000000107"
ACVPU_ANSWERS = {"248234008": "A", "130987000": "C", "300202002": "V", "450847001": "P", "422768004": "U"}
BP_PANELS = {"85354-9", "55284-4"}
BP_COMPONENTS = {"8480-6": "systolic", "8462-4": "diastolic"}

SAME = (1.0, 0.0)  # (scale, offset) of a unit that is already canonical
# parameter -> unit as written (UCUM code, else the unit text; lower-cased) -> (scale, offset):
# canonical value = value * scale + offset. A unit not listed here is flagged, not guessed.
UNIT_CONVERSIONS: dict[str, dict[str, tuple[float, float]]] = {
    "heart_rate": {"/min": SAME, "{beats}/min": SAME, "beats/min": SAME, "bpm": SAME},
    "respiration_rate": {"/min": SAME, "{breaths}/min": SAME, "breaths/min": SAME},
    "spo2": {"%": SAME},
    "temperature": {"cel": SAME, "°c": SAME, "degc": SAME, "[degf]": (5 / 9, -160 / 9), "°f": (5 / 9, -160 / 9),
                    "degf": (5 / 9, -160 / 9)},
    "systolic_bp": {"mm[hg]": SAME, "mmhg": SAME},
    "diastolic_bp": {"mm[hg]": SAME, "mmhg": SAME},
    "weight": {"kg": SAME, "[lb_av]": (LB_TO_KG, 0.0), "lb": (LB_TO_KG, 0.0), "lbs": (LB_TO_KG, 0.0),
               "g": (0.001, 0.0)},
    "glucose": {"mg/dl": SAME, "mmol/l": (MMOL_TO_MG_DL, 0.0)},
    # A step count is a count: devices write it with no unit as often as with one.
    "steps": {"": SAME, "{steps}": SAME, "steps": SAME, "{steps}/d": SAME, "/d": SAME, "/(24.h)": SAME,
              "{count}": SAME},
}
# Statuses that mean "this is not a measurement" (FHIR R4 ObservationStatus).
NOT_MEASURED = {"cancelled", "entered-in-error"}
NOT_A_CONDITION = {"refuted", "entered-in-error"}  # Condition.verificationStatus: not listed as on record
# Short names for the code systems a Condition may carry instead of SNOMED CT.
CODE_SYSTEMS = {"http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM", "http://hl7.org/fhir/sid/icd-10": "ICD-10",
                "http://hl7.org/fhir/sid/icd-9-cm": "ICD-9-CM"}
BUNDLE_TYPES = {"document", "message", "transaction", "transaction-response", "batch", "batch-response", "history",
                "searchset", "collection"}

# Condition display (case-insensitive regex) -> healthmon label; the first rule that matches
# wins and None means "no label", so the exclusions come before the rules they refine.
# Prediabetes keeps its own label: it is a risk state, not diabetes.
CONDITION_LABELS: tuple[tuple[str, str | None], ...] = (
    (r"\bsuspected\b|\bbenign\b", None),
    (r"\bpre-?diabet", "prediabetes"),
    (r"\bdiabetes insipidus\b", None),  # a pituitary/kidney disorder, not diabetes mellitus
    (r"\bdiabet", "diabetes"),  # incl. "Diabetes mellitus type 2" and its complications
    (r"\b(pulmonary|ocular|portal|intracranial) hypertension\b", None),
    (r"\bhypertensi", "hypertension"),
    (r"\bcancer\b|\bneoplasm\b|\bcarcinoma\b|\bmalignan|\blymphoma\b|\bleuk(a)?emia\b|\bmelanoma\b|\bsarcoma\b",
     "cancer"),
)


def condition_label(display: str | None) -> str | None:
    """The healthmon label for a Condition display (:data:`CONDITION_LABELS`), or None."""
    for pattern, label in CONDITION_LABELS:
        if display and re.search(pattern, display, re.IGNORECASE):
            return label
    return None
