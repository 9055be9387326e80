"""Seeded generator of SYNTHETIC labelled clinical notes for the demo model.

Every note, patient id, lab value and sentence here is invented from templates and phrase
banks; no real patient data is used and nothing is downloaded. The corpus exists so that
``healthmon demo`` can fine-tune and show a working classifier (none / diabetes /
hypertension / cancer) on a fresh install, and so the training pipeline can be tested end to
end without anyone handling protected health information.

The notes are deliberately not trivially separable: conditions are named with varied
abbreviations, lab values carry units and label-consistent ranges, and many notes contain
*hard negatives* -- negations ("denies polyuria"), family history ("mother had breast
cancer") and ruled-out work-ups -- about conditions the patient does NOT have. Labels always
describe the patient's own conditions only.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pandas is only needed by the frame/CSV helpers, not by the generator
    import pandas as pd

DEMO_LABELS: tuple[str, ...] = ("none", "diabetes", "hypertension", "cancer")

_CONDITIONS: tuple[str, ...] = DEMO_LABELS[1:]
_PAIRS: tuple[tuple[str, str], ...] = (
    ("diabetes", "hypertension"),
    ("diabetes", "cancer"),
    ("hypertension", "cancer"),
)

# Share of notes in each length tier. Long notes exceed one 512-token window so the
# windowed scorer gets exercised; brief ones mimic one-line telephone/refill notes.
_BRIEF_SHARE = 0.12
_LONG_SHARE = 0.05
# Chance, per condition the patient does NOT have, of planting a hard negative about it.
# Three absent conditions for "none" notes and two for single-condition notes put roughly
# half of them above zero hard negatives, so "condition word present" cannot stand in for
# "condition present" and the model has to learn negation and family-history context.
_HARD_NEGATIVE_P = 0.3
_MAX_RETRIES = 50


@dataclass(frozen=True)
class SyntheticNote:
    """One invented note and the conditions of its invented patient.

    Attributes:
        note_id: ``SYN-00001``-style id, unique within one generated corpus.
        patient_id: ``SYN-P0001``-style id; a patient may have several notes.
        text: the note text.
        labels: ``("none",)`` or one/two of diabetes, hypertension, cancer in DEMO_LABELS order.
    """

    note_id: str
    patient_id: str
    text: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class _Patient:
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


# --------------------------------------------------------------------------- phrase banks

_DM2_NAMES = (
    "T2DM", "DM2", "type 2 diabetes", "type 2 diabetes mellitus", "DM type 2", "T2D",
    "diabetes mellitus, type 2", "NIDDM", "DM",
)
_DM1_NAMES = ("T1DM", "type 1 diabetes", "DM1", "type 1 DM")
_HTN_NAMES = (
    "HTN", "hypertension", "essential hypertension", "essential HTN", "high blood pressure",
    "primary hypertension", "htn",
)
_CANCER_SITES_F = ("breast", "breast", "lung", "colon", "pancreas")
_CANCER_SITES_M = ("prostate", "prostate", "lung", "colon", "pancreas")
_REGIMENS = {
    "breast": ("anastrozole 1 mg daily", "letrozole 2.5 mg daily", "tamoxifen 20 mg daily",
               "dose-dense AC-T", "weekly paclitaxel", "trastuzumab + pertuzumab q3wk"),
    "lung": ("carboplatin/pemetrexed + pembrolizumab", "osimertinib 80 mg daily",
             "durvalumab consolidation", "carboplatin/paclitaxel with concurrent RT"),
    "colon": ("FOLFOX", "FOLFOX + bevacizumab", "CAPOX", "capecitabine"),
    "prostate": ("leuprolide ADT q3mo", "enzalutamide 160 mg daily",
                 "abiraterone + prednisone", "ADT + docetaxel"),
    "pancreas": ("FOLFIRINOX", "gemcitabine + nab-paclitaxel", "modified FOLFIRINOX"),
}
# Oral/hormonal regimens have no numbered cycles, nadir counts or antiemetics; notes about
# them must not talk about "C5" or neutropenia.
_CONTINUOUS_REGIMENS = frozenset({
    "anastrozole 1 mg daily", "letrozole 2.5 mg daily", "tamoxifen 20 mg daily",
    "osimertinib 80 mg daily", "leuprolide ADT q3mo", "enzalutamide 160 mg daily",
    "abiraterone + prednisone",
})
_STAGES = ("I", "IIA", "IIB", "IIIA", "IIIB", "IV", "IV")
_OTHER_PMH = (
    "asthma", "GERD", "hypothyroidism", "hyperlipidemia", "HLD", "depression", "anxiety",
    "OA of knees", "migraine", "BPH", "allergic rhinitis", "obesity", "OSA on CPAP",
    "iron deficiency anemia", "eczema", "gout", "hx appendectomy", "s/p cholecystectomy",
)
_OTHER_MEDS = {
    "asthma": "albuterol HFA 2 puffs q4h prn",
    "GERD": "omeprazole 20 mg daily",
    "hypothyroidism": "levothyroxine 75 mcg daily",
    "hyperlipidemia": "atorvastatin 20 mg daily",
    "HLD": "rosuvastatin 10 mg daily",
    "depression": "sertraline 50 mg daily",
    "anxiety": "escitalopram 10 mg daily",
    "OA of knees": "acetaminophen 650 mg q8h prn",
    "migraine": "sumatriptan 50 mg prn",
    "BPH": "tamsulosin 0.4 mg qHS",
    "allergic rhinitis": "fluticasone nasal spray daily",
    "OSA on CPAP": "CPAP nightly",
    "iron deficiency anemia": "ferrous sulfate 325 mg daily",
    "eczema": "triamcinolone 0.1% cream bid prn",
    "gout": "allopurinol 100 mg daily",
}
_SPARE_MEDS = ("vitamin D3 1000 IU daily", "multivitamin daily", "cetirizine 10 mg prn",
               "ibuprofen 400 mg prn", "melatonin 3 mg qHS", "fish oil")
_SPELLING_SLIPS = {  # real-world misspellings seen in dictated notes
    "patient": "patinet", "symptoms": "symtoms", "medications": "medicaitons",
    "history": "histroy", "without": "wihtout", "recommended": "reccomended",
    "tolerating": "tolerting", "follow": "folow", "appointment": "appointmnet",
    "discussed": "discused", "bilateral": "bilatral", "tenderness": "tendernes",
}
# Words whose corruption could erase the only mention of a label; typos never touch them.
_PROTECTED = re.compile(
    r"diabet|hypertens|cancer|carcinoma|malignan|oncolog|metformin|insulin|amlodipine|"
    r"lisinopril|losartan|metasta|polyuria|polydipsia|normotensive|pressure|denies|family|mother|"
    r"father",
    re.IGNORECASE,
)

_HEADERS: dict[str, tuple[str, ...]] = {
    "cc": ("CC", "Chief Complaint", "Reason for visit", "RFV"),
    "hpi": ("HPI", "History of Present Illness", "Interval History", "Subjective"),
    "pmh": ("PMH", "Past Medical History", "PMHx", "Problem List", "Medical Hx"),
    "meds": ("Meds", "Medications", "Current Medications", "Current meds", "Rx"),
    "allergies": ("Allergies", "ALL"),
    "fh": ("FH", "Family History", "FHx", "Family hx"),
    "sh": ("SH", "Social History", "Social"),
    "ros": ("ROS", "Review of Systems"),
    "vitals": ("Vitals", "VS", "Vital signs"),
    "exam": ("PE", "Exam", "Physical Exam", "O/E"),
    "labs": ("Labs", "Results", "Data", "Recent labs", "Investigations"),
    "imaging": ("Imaging", "Studies", "Radiology", "Imaging/Studies"),
    "assessment": ("Assessment", "Impression", "Dx", "Assessment"),
    "plan": ("Plan", "Recommendations", "Plan", "PLAN"),
    "ap": ("A/P", "Assessment and Plan", "Assessment & Plan", "Impression/Plan"),
}
_CANONICAL_ORDER = ("cc", "hpi", "pmh", "meds", "allergies", "fh", "sh", "ros", "vitals",
                    "exam", "labs", "imaging", "assessment", "plan")
# Sections holding free text as opposed to lists; lists may be rendered as bullets.
_LIST_SECTIONS = ("pmh", "meds", "labs", "plan", "fh", "imaging")


@dataclass(frozen=True)
class _Complaint:
    short: str
    hpi: tuple[str, ...]
    exam: tuple[str, ...]
    assessment: str
    plan: tuple[str, ...]
    sex: str | None = None


_COMPLAINTS: tuple[_Complaint, ...] = (
    _Complaint(
        "sore throat and nasal congestion x{d} days",
        ("Reports rhinorrhea, mild sore throat and dry cough, no SOB.",
         "Sick contacts at home (kids with colds).",
         "Tmax 100.2F at home, took acetaminophen with relief.",
         "No ear pain, no sinus tenderness."),
        ("Pharynx mildly erythematous, no exudate. TMs clear. Lungs CTAB.",),
        "Viral URI",
        ("supportive care: fluids, rest, saline rinses", "acetaminophen prn fever",
         "return if fever > 3 days or SOB"),
    ),
    _Complaint(
        "R ankle pain after inversion injury",
        ("Rolled R ankle playing basketball {d} days ago, swelling over lateral malleolus.",
         "Able to bear weight with limp, no numbness.",
         "Iced it at home, pain 5/10."),
        ("Tender ATFL, mild swelling, no bony tenderness at posterior malleolus; Ottawa neg.",),
        "R ankle sprain, grade I-II",
        ("RICE", "ankle brace", "ibuprofen 400 mg tid with food x 5 days",
         "XR if not improving in 1 wk"),
    ),
    _Complaint(
        "low back pain x{d} days",
        ("Onset after lifting boxes while moving house; no radiation to legs.",
         "No saddle anesthesia, no bowel/bladder changes.",
         "Worse with bending, better lying flat."),
        ("Paraspinal muscle tenderness L4-L5, SLR neg bilat, strength 5/5.",),
        "Mechanical low back pain",
        ("PT referral", "heat, gentle stretching", "naproxen 500 mg bid prn x 1 wk",
         "red flags reviewed"),
    ),
    _Complaint(
        "L knee pain",
        ("Gradual onset L knee pain over months, worse on stairs.",
         "Morning stiffness < 30 min, no locking or giving way."),
        ("Crepitus L knee, small effusion, full ROM.",),
        "OA L knee",
        ("weight-bearing exercise, quad strengthening", "topical diclofenac gel",
         "consider intra-articular steroid if no improvement"),
    ),
    _Complaint(
        "itchy rash on forearms",
        ("Pruritic rash on both forearms after gardening, started {d} days ago.",
         "No new soaps or detergents, no fever."),
        ("Linear erythematous vesicular papules on forearms.",),
        "Contact dermatitis (likely plant)",
        ("triamcinolone 0.1% cream bid x 2 wks", "avoid exposure", "oral antihistamine qHS"),
    ),
    _Complaint(
        "heartburn after meals",
        ("Burning epigastric discomfort after large meals and at night.",
         "No dysphagia, no melena, no weight loss.", "Drinks 2-3 coffees/day."),
        ("Abdomen soft, mild epigastric tenderness, no guarding.",),
        "GERD",
        ("trial omeprazole 20 mg daily x 8 wks", "avoid late meals, elevate head of bed"),
    ),
    _Complaint(
        "trouble sleeping",
        ("Difficulty falling asleep for ~{d} weeks, work stress.",
         "Uses phone in bed, 2 coffees in afternoon.", "No snoring reported by partner."),
        ("Alert, appropriate affect.",),
        "Insomnia, likely psychophysiologic",
        ("sleep hygiene counselling", "CBT-I resources given", "f/u 6 wks"),
    ),
    _Complaint(
        "sneezing and itchy eyes",
        ("Seasonal symptoms every spring: sneezing, clear rhinorrhea, itchy watery eyes.",
         "OTC loratadine partially helps."),
        ("Boggy pale nasal turbinates, mild conjunctival injection.",),
        "Seasonal allergic rhinitis",
        ("fluticasone nasal 2 sprays daily", "cetirizine 10 mg daily during season"),
    ),
    _Complaint(
        "dysuria and urinary frequency x{d} days",
        ("Burning with urination and frequency, no flank pain, no fever.",
         "No vaginal discharge. LMP 2 wks ago."),
        ("No CVA tenderness. Mild suprapubic tenderness.",),
        "Uncomplicated cystitis",
        ("UA: + leuk esterase, + nitrite", "nitrofurantoin 100 mg bid x 5 days",
         "urine cx sent"),
        sex="F",
    ),
    _Complaint(
        "headaches",
        ("Bilateral band-like headaches late in the day for {d} weeks, no aura.",
         "Long hours at computer, skipping lunch.", "No visual change, no focal weakness."),
        ("Neuro exam nonfocal. Trapezius tenderness bilat.",),
        "Tension-type headache",
        ("ergonomics, regular meals, hydration", "acetaminophen prn, limit to < 10 days/mo",
         "headache diary"),
    ),
    _Complaint(
        "R ear pain",
        ("R ear pain and itch after swimming, muffled hearing.",),
        ("R canal edematous with debris, TM intact; tragal tenderness.",),
        "Otitis externa R",
        ("ciprofloxacin/dexamethasone otic drops bid x 7 days", "keep ear dry"),
    ),
    _Complaint(
        "red eye with discharge",
        ("Woke with crusting of L eye, gritty sensation, vision normal.",),
        ("L conjunctival injection, mucopurulent discharge, PERRL, VA 20/20.",),
        "Bacterial conjunctivitis",
        ("erythromycin ophthalmic ointment qid x 5 days", "hand hygiene"),
    ),
    _Complaint(
        "feeling anxious and stressed",
        ("Increased worry and poor concentration since job change, GAD-7 = 11.",
         "No SI/HI. Sleeping ~6 h."),
        ("Mildly anxious, linear thought process.",),
        "Generalized anxiety, moderate",
        ("counselling referral", "discussed SSRI, pt prefers therapy first",
         "f/u 4 wks"),
    ),
    _Complaint(
        "R shoulder pain reaching overhead",
        ("R shoulder pain x{d} weeks after painting ceiling, worse at night lying on R side.",),
        ("Painful arc 70-120 deg, + Neer/Hawkins, strength intact.",),
        "R rotator cuff tendinopathy",
        ("PT referral", "NSAID prn", "activity modification"),
    ),
    _Complaint(
        "med refill and forms",
        ("Needs paperwork for new job and refills; no new concerns.",),
        ("No acute findings.",),
        "Administrative visit",
        ("forms completed", "refills sent"),
    ),
)


# --------------------------------------------------------------------------- helpers


def _a1c_text(r: random.Random, pct: float) -> str:
    mmol = round((pct - 2.15) * 10.929)
    return r.choice((
        f"HbA1c {pct:.1f}% ({mmol} mmol/mol)",
        f"A1c {pct:.1f}%",
        f"HbA1c {pct:.1f} %",
        f"Hgb A1c: {pct:.1f}%",
        f"HbA1c {mmol} mmol/mol ({pct:.1f}%)",
        f"a1c {pct:.1f}",
    ))


def _glucose_text(r: random.Random, mg_dl: int, fasting: bool) -> str:
    mmol = mg_dl / 18.0
    if fasting:
        return r.choice((f"FPG {mg_dl} mg/dL", f"fasting glucose {mmol:.1f} mmol/L",
                         f"FBG {mg_dl} mg/dL", f"fasting BG {mg_dl}mg/dl"))
    return r.choice((f"random glucose {mg_dl} mg/dL", f"glucose {mg_dl} mg/dL (non-fasting)",
                     f"RBG {mmol:.1f} mmol/L", f"POC glucose {mg_dl}"))


def _join_names(items: Sequence[str], r: random.Random) -> str:
    if len(items) <= 1:
        return "".join(items)
    if r.random() < 0.5:
        return ", ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def _sentence(s: str) -> str:
    s = s.strip()
    if not s:
        return s
    s = _cap(s)
    return s if s[-1] in ".!?)" else s + "."


def _word_count(text: str) -> int:
    return len(text.split())


# --------------------------------------------------------------------------- note writer


class _NoteWriter:
    """Composes one note for one patient; all randomness comes from the passed-in Random."""

    def __init__(self, r: random.Random, patient: _Patient, tier: str, first_visit: bool) -> None:
        self.r = r
        self.p = patient
        self.tier = tier
        self.first_visit = first_visit
        self.detailed = False  # set per build(); "standard" notes that document most sections
        self.ap_problems: list[tuple[str, list[str]]] = []
        self.ap_tail: list[str] = []
        self.has = patient.conditions
        self.absent = tuple(c for c in _CONDITIONS if c not in patient.conditions)
        f = patient.sex == "F"
        self.he = "she" if f else "he"
        self.his = "her" if f else "his"
        # Chosen once per note so that every section quoting a value agrees with the others.
        self.dm_name = r.choice(_DM1_NAMES if patient.diabetes_type == 1 else _DM2_NAMES)
        self.htn_name = r.choice(_HTN_NAMES)
        self.cancer_name = self._cancer_name() if patient.cancer_site else ""
        self.visit, self.focus = self._visit()
        # A condition diagnosed today is by definition not yet controlled.
        new = self.visit == "new"
        self.dm_controlled = r.random() < 0.25 and not (new and self.focus == "diabetes")
        self.htn_controlled = r.random() < 0.3 and not (new and self.focus == "hypertension")
        self.cycle = r.randint(2, 10)
        self.chemo = bool(patient.regimen) and patient.regimen not in _CONTINUOUS_REGIMENS
        self.ecog = r.choice((0, 0, 1, 1, 1, 2))
        self.size = round(r.uniform(1.4, 5.8), 1)
        self.sbp, self.dbp = self._bp()
        self.hr = r.randint(58, 98)
        self.a1c, self.fpg, self.rbg = self._glycaemia()
        self.htn_meds = self._htn_meds()
        self.dm_meds = self._dm_meds()
        self.complaint = self._complaint()
        self.d = r.randint(2, 10)

    # ---- per-note values

    def _bp(self) -> tuple[int, int]:
        r = self.r
        if "hypertension" in self.has:
            if self.htn_controlled:
                return r.randint(120, 134), r.randint(72, 84)
            s = r.randint(142, 182)
            return s, min(r.randint(88, 112), s - 40)
        return r.randint(102, 128), r.randint(62, 82)

    def _glycaemia(self) -> tuple[float, int, int]:
        r = self.r
        if "diabetes" in self.has:
            if self.dm_controlled:
                return round(r.uniform(6.3, 7.0), 1), r.randint(108, 136), r.randint(130, 180)
            return round(r.uniform(7.4, 11.8), 1), r.randint(140, 262), r.randint(200, 340)
        return round(r.uniform(4.8, 5.6), 1), r.randint(72, 99), r.randint(82, 138)

    def _htn_meds(self) -> list[str]:
        r = self.r
        if "hypertension" not in self.has or (self.visit == "new" and self.focus == "hypertension"):
            return []
        pool = ["amlodipine 5 mg daily", "amlodipine 10 mg daily", "lisinopril 10 mg daily",
                "lisinopril 20 mg daily", "losartan 50 mg daily", "losartan 100 mg daily",
                "HCTZ 12.5 mg daily", "HCTZ 25 mg daily", "chlorthalidone 25 mg daily",
                "metoprolol succinate 50 mg daily"]
        meds = r.sample(pool, r.randint(1, 2))
        # Two drugs of one class (two doses of amlodipine, or ACEi + ARB, which is avoided
        # clinically) would read as a transcription error.
        drug_class = {"amlodipine": "ccb", "lisinopril": "raas", "losartan": "raas",
                      "HCTZ": "thiazide", "chlorthalidone": "thiazide", "metoprolol": "bb"}
        if len(meds) == 2 and drug_class[meds[0].split()[0]] == drug_class[meds[1].split()[0]]:
            meds = meds[:1]
        return meds

    def _dm_meds(self) -> list[str]:
        r = self.r
        if "diabetes" not in self.has or (self.visit == "new" and self.focus == "diabetes"):
            return []
        if self.p.diabetes_type == 1:
            return ["insulin glargine 22 units qHS", "insulin lispro per sliding scale"]
        pool = ["empagliflozin 10 mg daily", "dapagliflozin 10 mg daily",
                "insulin glargine {u} units qHS".format(u=r.randint(10, 48)),
                "semaglutide 0.5 mg weekly", "glipizide 5 mg bid", "sitagliptin 100 mg daily"]
        meds = [r.choice(("metformin 500 mg bid", "metformin 1000 mg bid",
                          "metformin XR 1500 mg daily"))]
        meds += r.sample(pool, r.choice((0, 1, 1, 2)))
        # A DPP-4 inhibitor adds nothing on top of a GLP-1 agonist; no one prescribes both.
        if any("semaglutide" in m for m in meds):
            meds = [m for m in meds if "sitagliptin" not in m]
        return meds

    def _cancer_name(self) -> str:
        r, p = self.r, self.p
        site = p.cancer_site
        options: dict[str, tuple[str, ...]] = {
            "breast": ("breast ca", f"{p.side} breast IDC", "breast cancer",
                       f"invasive ductal carcinoma of the {p.side} breast",
                       "ER+/PR+/HER2- breast cancer", f"{p.side} breast carcinoma"),
            "lung": ("NSCLC", "non-small cell lung cancer", "lung adenocarcinoma",
                     "NSCLC (adenocarcinoma)", f"stage {p.stage} NSCLC"),
            "colon": ("colon ca", "colon adenocarcinoma", "CRC", "colorectal cancer",
                      "sigmoid colon adenocarcinoma"),
            "prostate": ("prostate ca", "prostate adenocarcinoma", "prostate cancer",
                         "CaP, Gleason 4+3"),
            "pancreas": ("pancreatic adenocarcinoma", "pancreatic ca", "PDAC",
                         "adenocarcinoma of the pancreatic head"),
        }
        return r.choice(options[site or "lung"])

    def _visit(self) -> tuple[str, str | None]:
        r = self.r
        if not self.has:
            return r.choice(("complaint", "complaint", "complaint", "preventive", "preventive")), None
        focus = r.choice(self.has)
        # A diagnosis can only be new at a patient's first note, or repeat visits would
        # contradict each other.
        new_weight = 12 if self.first_visit else 0
        kind = r.choices(("followup", "new", "complaint", "preventive"), (45, new_weight, 28, 15))[0]
        return kind, focus

    def _complaint(self) -> _Complaint | None:
        r = self.r
        if self.visit != "complaint" and r.random() > 0.15:
            return None
        pool = [c for c in _COMPLAINTS if c.sex in (None, self.p.sex)]
        return r.choice(pool)

    # ---- small text pieces

    def age_sex(self) -> str:
        r, p = self.r, self.p
        sex = r.choice(("M", "male", "man")) if p.sex == "M" else r.choice(("F", "female", "woman"))
        if sex in ("man", "woman"):
            return r.choice((f"{p.age}-year-old {sex}", f"{p.age} year old {sex}"))
        return r.choice((f"{p.age} y/o {sex}", f"{p.age}yo {sex}", f"{p.age} yo {sex}",
                         f"{p.age}-year-old {sex}", f"{p.age}{sex[0].upper()}"))

    def condition_names(self, exclude: str | None = None) -> list[str]:
        names = []
        for c in self.has:
            if c == exclude:
                continue
            names.append({"diabetes": self.dm_name, "hypertension": self.htn_name,
                          "cancer": self.cancer_name}[c])
        return names

    def bp_text(self) -> str:
        return self.r.choice((f"BP {self.sbp}/{self.dbp} mmHg", f"BP {self.sbp}/{self.dbp}",
                              f"BP: {self.sbp}/{self.dbp} mm Hg", f"{self.sbp}/{self.dbp}"))

    def marker(self) -> str:
        r, site = self.r, self.p.cancer_site
        if site == "prostate":
            return f"PSA {r.uniform(6, 95):.1f} ng/mL"
        if site == "breast":
            return f"CA 15-3 {r.randint(36, 140)} U/mL"
        if site == "pancreas":
            return f"CA 19-9 {r.randint(90, 1400)} U/mL"
        return f"CEA {r.uniform(5.5, 80):.1f} ng/mL"

    # ---- condition content

    def dm_hpi(self) -> list[str]:
        r, n = self.r, self.dm_name
        meds = self.dm_meds
        out = [
            f"{n} dx {self.p.years_dm} yrs ago, here for f/u",
            f"home fasting glucose readings {self.fpg - 15}-{self.fpg + 30} mg/dL",
            f"reports adherence to {meds[0]}, occasional GI upset",
            "c/o numbness and tingling in both feet, worse at night, c/w peripheral neuropathy",
            f"checks BG {r.choice(('once', 'twice', '2-3 times'))} daily, no hypoglycemic episodes",
            "admits to dietary indiscretion over the holidays",
        ]
        if not self.dm_controlled:
            out.append(f"last A1c {self.a1c}%, up from {self.a1c - r.uniform(0.4, 1.5):.1f}%")
            out.append("reports polyuria and nocturia, increased thirst")
        else:
            out.append(f"A1c {self.a1c}% at last check, at goal")
        if any("glargine" in m for m in meds):
            out.append("missed several doses of insulin glargine while travelling")
        return out

    def dm_new(self) -> list[str]:
        return [
            f"reports polyuria and polydipsia x {self.d} weeks, unintentional wt loss ~3 kg",
            f"routine labs showed A1c {self.a1c}% and FPG {self.fpg} mg/dL",
            "blurred vision intermittently, no abdominal pain or vomiting",
        ]

    def htn_hpi(self) -> list[str]:
        r, n = self.r, self.htn_name
        med = self.htn_meds[0] if self.htn_meds else "lisinopril"
        out = [
            f"{n} x {self.p.years_htn} yrs on {med}",
            f"home BP log avg {self.sbp - r.randint(0, 8)}/{self.dbp - r.randint(0, 5)}",
            "occasional morning headaches, no chest pain, SOB or vision changes",
            "adds salt to food, trying to cut down",
            f"ran out of {med.split()[0]} ~2 wks ago",
            "no palpitations, no ankle swelling",
        ]
        if self.htn_controlled:
            out.append("BP has been at goal per home readings")
        return out

    def htn_new(self) -> list[str]:
        r = self.r
        return [
            f"elevated BP at 3 separate visits ({self.sbp}/{self.dbp}, "
            f"{self.sbp - r.randint(2, 10)}/{self.dbp - r.randint(1, 6)}, "
            f"{self.sbp + r.randint(1, 8)}/{self.dbp + r.randint(0, 4)})",
            "home readings confirm sustained elevation, avg > 140/90",
            "no secondary causes suspected; no OSA symptoms, no NSAID use",
        ]

    def cancer_hpi(self) -> list[str]:
        r, p, n = self.r, self.p, self.cancer_name
        reg = p.regimen
        common = [f"{n}, followed by oncology, currently on {reg}", f"ECOG {self.ecog}"]
        if self.chemo:
            common += [f"completed cycle {self.cycle} of {reg}; fatigue worst days 3-5",
                       "mild nausea controlled with ondansetron",
                       f"port-a-cath in place {p.side} chest, no redness"]
        else:
            common += [f"on {reg} since {2024 - r.randint(1, 4)}, tolerating well",
                       "reports mild fatigue, no missed doses"]
        if p.cancer_site == "colon":
            colon_tx = (f"on {reg}, cycle {self.cycle} of 12; cold-induced paresthesias in fingertips"
                        if "FOLFOX" in reg or "CAPOX" in reg
                        else f"on {reg}, mild hand-foot syndrome")
        else:
            colon_tx = ""
        site = {
            "breast": [f"s/p {p.side} lumpectomy + SLNB, margins negative",
                       "hot flashes and arthralgias on endocrine therapy" if not self.chemo
                       else "alopecia and fatigue since starting chemo",
                       f"biopsy-proven IDC, {r.choice(('grade 2', 'grade 3'))}, ER+/PR+"],
            "lung": ["chronic cough, now with streaks of hemoptysis",
                     f"exertional dyspnea, wt loss {r.randint(2, 9)} kg over 3 mo",
                     "NSCLC dx after mass on CT chest, biopsy-proven adenocarcinoma"],
            "colon": [colon_tx,
                      "s/p R hemicolectomy, known liver metastases",
                      "hematochezia and change in bowel habits preceded diagnosis"],
            "prostate": ["nocturia and weak stream prior to dx",
                         "hot flashes on hormonal therapy", "bone pain in lower back from known osseous metastases"],
            "pancreas": ["painless jaundice prompted work-up, s/p biliary stent",
                         "epigastric pain radiating to back, on oxycodone prn",
                         f"poor appetite, wt down {r.randint(4, 12)} kg"],
        }[p.cancer_site or "lung"]
        return common + site

    def cancer_new(self) -> list[str]:
        r, p = self.r, self.p
        site = p.cancer_site
        first = {
            "breast": f"palpable {p.side} breast lump noticed {self.d} weeks ago, mammogram BI-RADS 5",
            "lung": f"incidental {self.size} cm mass on CT chest, spiculated",
            "colon": "iron deficiency anemia and hematochezia; colonoscopy showed a friable mass",
            "prostate": f"PSA rose to {r.uniform(8, 30):.1f} ng/mL, MRI PI-RADS 5 lesion",
            "pancreas": "painless jaundice; CT showed a pancreatic head mass",
        }[site or "lung"]
        return [first, "referred to oncology, staging pending",
                "discussed diagnosis with patient and daughter, questions answered"]

    def new_dx_statement(self) -> str:
        """The sentence that establishes a new diagnosis; PMH and opener omit it as history."""
        r = self.r
        if self.focus == "diabetes":
            return r.choice((
                f"repeat {_glucose_text(r, self.fpg, True)} confirms new {self.dm_name}",
                f"A1c {self.a1c}% on two occasions, meets criteria for {self.dm_name}",
                f"findings c/w newly diagnosed {self.dm_name}",
            ))
        if self.focus == "hypertension":
            return r.choice((f"c/w new dx of {self.htn_name}",
                             f"meets criteria for {self.htn_name}, stage 2",
                             f"diagnosis of {self.htn_name} discussed with pt"))
        return r.choice((f"biopsy-proven {self.cancer_name}",
                         f"pathology confirms {self.cancer_name}",
                         f"core biopsy: {self.cancer_name}"))

    def condition_status(self, cond: str) -> str:
        r = self.r
        if cond == "diabetes":
            return r.choice((
                f"{self.dm_name} — last A1c {self.a1c}%, on {self.dm_meds[0]}",
                f"{self.dm_name} stable, checks sugars daily",
                f"{self.dm_name}: taking {_join_names([m.split()[0] for m in self.dm_meds], r)}",
            ))
        if cond == "hypertension":
            med = self.htn_meds[0] if self.htn_meds else "lisinopril 10 mg daily"
            return r.choice((
                f"{self.htn_name}, takes {med}",
                f"{self.htn_name} — home readings reportedly ok on {med.split()[0]}"
                if self.htn_controlled else f"{self.htn_name} — home readings running high on {med.split()[0]}",
                f"hx {self.htn_name}, compliant with meds",
            ))
        return r.choice((
            f"{self.cancer_name} on {self.p.regimen}, last seen by oncology 2 wks ago",
            f"known {self.cancer_name}, ECOG {self.ecog}, next oncology visit in 1 wk",
            f"{self.cancer_name} — oncology following",
        ))

    # ---- hard negatives about conditions the patient does not have

    def hard_negatives(self) -> list[tuple[str, str]]:
        r, p = self.r, self.p
        out: list[tuple[str, str]] = []
        for cond in self.absent:
            if r.random() >= _HARD_NEGATIVE_P:
                continue
            if cond == "diabetes":
                pool = [
                    ("hpi", "Denies polyuria or polydipsia."),
                    ("hpi", "denies polyuria, polydipsia, or unintentional weight loss."),
                    ("pmh", "No history of diabetes."),
                    ("pmh", "No hx of DM."),
                    ("labs", f"HbA1c {self.a1c}%, no diabetes."),
                    ("labs", f"A1c {self.a1c}% ({round((self.a1c - 2.15) * 10.929)} mmol/mol) — not diabetic."),
                    ("labs", f"FPG {self.fpg} mg/dL; diabetes screen negative."),
                    ("fh", "Father with T2DM."),
                    ("fh", "Mother had type 2 diabetes, on insulin."),
                    ("fh", "Family history of diabetes (maternal grandmother)."),
                    ("fh", "brother w/ DM2 dx at 50."),
                    ("assessment", f"R/o diabetes given family hx — A1c {self.a1c}% and FPG {self.fpg} mg/dL, diabetes ruled out."),
                    ("assessment", f"Fatigue: diabetes ruled out (A1c {self.a1c}%), likely sleep-related."),
                ]
            elif cond == "hypertension":
                pool = [
                    ("pmh", "No history of hypertension."),
                    ("pmh", "No hx of HTN."),
                    ("hpi", "Denies hx of high blood pressure."),
                    ("vitals", "Normotensive today, no hx of HTN."),
                    ("fh", "Father with HTN, died of stroke at 78."),
                    ("fh", "Mother has hypertension."),
                    ("fh", "Family history of hypertension in both parents."),
                    ("assessment", "Elevated reading at pharmacy kiosk; home log avg 118/74 — hypertension ruled out."),
                    ("assessment", "24h ambulatory BP monitor avg 121/77, HTN ruled out."),
                    ("hpi", "Never told BP was high; denies headaches or vision changes."),
                ]
            else:
                pool = [
                    ("labs", f"Screening colonoscopy {r.randint(2016, 2023)}: negative for malignancy, 2 small hyperplastic polyps removed."),
                    ("labs", "LDCT lung screening: Lung-RADS 2, no suspicious nodule."),
                    ("fh", f"Mother had breast cancer at {r.randint(44, 70)}."),
                    ("fh", "FH: father with prostate ca."),
                    ("fh", "Maternal uncle with colon cancer in his 60s."),
                    ("fh", "Sister dx with ovarian cancer; pt's BRCA testing negative."),
                    ("pmh", "No personal history of cancer."),
                    ("pmh", "no hx of malignancy."),
                    ("hpi", "Denies weight loss, night sweats, or fevers."),
                    ("assessment", "Cervical lymphadenopathy: reactive, excisional biopsy benign — lymphoma ruled out."),
                    ("assessment", "Thyroid nodule: FNA benign (Bethesda II), malignancy ruled out."),
                    ("imaging", "CT chest: no mass, no lymphadenopathy."),
                ]
                if p.sex == "F":
                    pool += [
                        ("labs", f"Mammogram {r.randint(2019, 2024)}: BI-RADS 1, negative for malignancy."),
                        ("assessment", "Breast lump: US c/w simple cyst, r/o malignancy — no suspicious features."),
                        ("exam", "No palpable breast masses or axillary lymphadenopathy."),
                    ]
                elif p.age >= 45:
                    pool += [("labs", f"PSA {r.uniform(0.3, 2.6):.1f} ng/mL, within normal limits, no prostate cancer concern.")]
            out.append(r.choice(pool))
        return out

    # ---- sections

    def opener(self, name_conditions: bool) -> str:
        r = self.r
        exclude = self.focus if self.visit == "new" else None
        names = self.condition_names(exclude) if name_conditions else []
        others = list(r.sample(self.p.other_pmh, min(len(self.p.other_pmh), r.randint(0, 2))))
        pmh_items = names + others
        if r.random() < 0.5:
            r.shuffle(pmh_items)
        if pmh_items:
            lead = r.choice(("with PMH of", "w/ hx of", "with history of", "with", "w/ PMHx",
                             "with known"))
            pmh = f" {lead} {_join_names(pmh_items, r)}"
        elif not self.has:
            pmh = r.choice((" with no significant PMH", " w/ no chronic medical problems",
                            ", previously healthy,", "", " with no PMH"))
        else:
            pmh = ""
        who = self.age_sex()
        if r.random() < 0.3:
            who = r.choice(("Pt is a ", "Patient is a ", "pt ", "This is a ")) + who
        return _sentence(f"{who}{pmh} {self.visit_clause()}")

    def visit_clause(self) -> str:
        r = self.r
        if self.visit == "complaint" and self.complaint:
            short = self.complaint.short.format(d=self.d)
            return r.choice((f"c/o {short}", f"presents with {short}", f"here for {short}",
                             f"presenting c/o {short}"))
        if self.visit == "preventive":
            return r.choice(("here for annual physical", "presenting for annual wellness visit",
                             "for preventive care visit", "for routine health maintenance exam",
                             "here for yearly check-up"))
        f = self.focus
        if self.visit == "new":
            return {
                "diabetes": r.choice(("referred for elevated A1c on screening labs",
                                      "presenting with polyuria and polydipsia")),
                "hypertension": r.choice(("referred after elevated BP readings at several visits",
                                          "here to discuss high BP readings")),
                "cancer": r.choice(("referred for abnormal imaging", "here to review biopsy results",
                                    "seen for new diagnosis discussion")),
            }[f or "diabetes"]
        return {
            "diabetes": r.choice(("presenting for routine diabetes f/u", "here for DM f/u and med review",
                                  f"for 3-month follow-up of {self.dm_name}", "here for sugar check")),
            "hypertension": r.choice(("here for BP check", "for HTN f/u",
                                      "presenting for follow-up of blood pressure",
                                      "here for BP recheck after med change")),
            "cancer": r.choice((f"seen in oncology clinic prior to C{self.cycle + 1} of {self.p.regimen}"
                                if self.chemo else f"seen in oncology clinic, on {self.p.regimen}",
                                f"here for f/u of {self.cancer_name}", "presenting for restaging results",
                                "for oncology follow-up")),
        }[f or "diabetes"]

    def hpi_body(self, extended: bool) -> list[str]:
        r = self.r
        out: list[str] = []
        k = 5 if extended else r.randint(3, 4) if self.detailed else r.randint(1, 3)
        if self.visit in ("followup", "new") and self.focus:
            bank = {
                ("followup", "diabetes"): self.dm_hpi, ("new", "diabetes"): self.dm_new,
                ("followup", "hypertension"): self.htn_hpi, ("new", "hypertension"): self.htn_new,
                ("followup", "cancer"): self.cancer_hpi, ("new", "cancer"): self.cancer_new,
            }[(self.visit, self.focus)]()
            out += r.sample(bank, min(k, len(bank)))
            if self.visit == "new":
                out.insert(r.randint(1, len(out)), self.new_dx_statement())
        if self.complaint:
            hp = [h.format(d=self.d) for h in self.complaint.hpi]
            if self.visit == "complaint":
                out += r.sample(hp, min(len(hp), k))
            else:
                short = self.complaint.short.format(d=self.d)
                out.append(r.choice(("also c/o ", "incidentally mentions ", "additionally reports "))
                           + short)
                if r.random() < 0.5:
                    out.append(r.choice(hp))
        if self.visit == "preventive":
            out += r.sample(["no acute complaints", "feels well overall",
                             "exercises 2-3x/wk, walks dog daily",
                             "diet: eats out frequently", "sleeping ok"], r.randint(1, 2 + extended))
        for c in self.has:
            if c != self.focus or self.visit in ("complaint", "preventive"):
                if extended or r.random() < 0.5:
                    out.append(self.condition_status(c))
        if extended:
            out.append(r.choice((
                f"{_cap(self.he)} lives with {self.his} spouse and works part-time; "
                f"reports moderate stress but good social support",
                f"{_cap(self.he)} is retired and lives alone, independent in ADLs and IADLs"
                if self.p.age >= 65 else
                f"{_cap(self.he)} works full time and lives with {self.his} two children",
                f"{_cap(self.he)} drives, manages {self.his} own medications with a pill box",
            )))
            out.append(r.choice((
                "Med rec performed, no changes since last visit outside of what is noted",
                "Interval history otherwise unremarkable; no ED visits or hospitalizations since last seen",
                "Reviewed outside records from urgent care visit last month",
            )))
        return out

    def pmh_items(self) -> list[str]:
        r = self.r
        items: list[str] = []
        exclude = self.focus if self.visit == "new" else None
        for c in self.has:
            if c == exclude:
                continue
            if c == "diabetes":
                items.append(r.choice((self.dm_name, f"{self.dm_name} (dx {2024 - self.p.years_dm})",
                                       f"{self.dm_name} w/ neuropathy")))
            elif c == "hypertension":
                items.append(r.choice((self.htn_name, f"{self.htn_name} x {self.p.years_htn} yrs")))
            else:
                items.append(r.choice((f"{self.cancer_name}, stage {self.p.stage}",
                                       self.cancer_name, f"{self.cancer_name} on {self.p.regimen}")))
        items += list(self.p.other_pmh)
        r.shuffle(items)
        if not items:
            items = [r.choice(("none", "no significant PMH", "healthy, no chronic problems", "nil"))]
        return items

    def meds_items(self) -> list[str]:
        r = self.r
        items = list(self.dm_meds) + list(self.htn_meds)
        if "cancer" in self.has and not (self.visit == "new" and self.focus == "cancer"):
            items.append(r.choice((self.p.regimen, f"{self.p.regimen} (per oncology)")))
            if self.chemo and r.random() < 0.5:
                items.append("ondansetron 8 mg q8h prn nausea")
        items += [_OTHER_MEDS[x] for x in self.p.other_pmh if x in _OTHER_MEDS]
        if r.random() < 0.4:
            items.append(r.choice(_SPARE_MEDS))
        if "diabetes" in self.has and "hypertension" not in self.has and r.random() < 0.15:
            # ACE inhibitors are given to normotensive diabetics for kidney protection: a
            # realistic trap for a model that equates "lisinopril" with hypertension.
            items.append("lisinopril 5 mg daily (microalbuminuria, normotensive)")
        r.shuffle(items)
        return items or [r.choice(("none", "no daily meds", "OCP", "none regularly"))]

    def fh_items(self) -> list[str]:
        r = self.r
        pool = ["Father with CAD, MI at 64.", "Mother with hypothyroidism.", "Siblings healthy.",
                "No family hx of early cardiac death.", "Non-contributory.",
                "Paternal grandfather with stroke."]
        return r.sample(pool, r.randint(1, 2))

    def sh_text(self) -> str:
        r = self.r
        smoke = (f"Former smoker, {r.randint(5, max(5, min(45, self.p.age - 18)))} pack-yr, "
                 f"quit {r.randint(1, max(1, min(20, self.p.age - 25)))} yrs ago"
                 if self.p.smoker else r.choice(("Never smoker", "Non-smoker", "No tobacco")))
        etoh = r.choice(("EtOH socially", "drinks 2-3 beers/wk", "no alcohol", "wine 1 glass/night"))
        if self.p.age >= 67:
            job = r.choice(("retired", "retired teacher", "retired, volunteers at church"))
        else:
            job = r.choice(("works as a teacher", "truck driver", "office worker", "nurse",
                            "works in construction", "accountant", "chef")
                           + (("student",) if self.p.age < 30 else ()))
        return f"{smoke}; {etoh}; {job}."

    def ros_text(self, extended: bool) -> str:
        r = self.r
        lines = ["Constitutional: no fevers/chills", "CV: no chest pain or palpitations",
                 "Resp: no SOB", "GI: no N/V/D", "GU: no dysuria", "MSK: see HPI",
                 "Neuro: no focal weakness", "Skin: no rash", "Psych: mood ok"]
        if "diabetes" in self.has and not self.dm_controlled:
            lines.append("Endo: + polyuria, + polydipsia")
        if "cancer" in self.has:
            lines[0] = "Constitutional: + fatigue, + weight loss"
        picked = lines if extended else r.sample(lines, r.randint(2, 4))
        if not extended and r.random() < 0.3:
            return "Negative except as per HPI."
        return "; ".join(picked) + "."

    def vitals_text(self) -> str:
        r, p = self.r, self.p
        temp_c = round(r.uniform(37.6, 38.3) if self.complaint and "URI" in self.complaint.assessment
                       else r.uniform(36.3, 37.2), 1)
        height_m = r.uniform(1.55, 1.75) if p.sex == "F" else r.uniform(1.65, 1.92)
        wt = round(p.bmi * height_m**2, 0)
        parts = [self.bp_text(), f"HR {self.hr}", f"RR {r.randint(12, 18)}",
                 r.choice((f"T {temp_c} °C", f"T {temp_c}C", f"Temp {temp_c * 9 / 5 + 32:.1f}F")),
                 f"SpO2 {r.randint(95, 100)}%{r.choice(('', ' RA', ' on RA'))}",
                 r.choice((f"Wt {wt:.0f} kg", f"Wt {wt * 2.2046:.0f} lb")), f"BMI {p.bmi:.1f}"]
        if r.random() < 0.4:
            parts = r.sample(parts, r.randint(3, len(parts)))
        if "hypertension" in self.has and not self.htn_controlled and r.random() < 0.5:
            parts.insert(1, f"repeat {self.sbp - r.randint(1, 6)}/{self.dbp - r.randint(0, 4)}")
        return r.choice((", ".join(parts), "  ".join(parts), " | ".join(parts)))

    def exam_text(self, extended: bool) -> str:
        r = self.r
        items = [r.choice(("Gen: NAD, well appearing", "General: alert, NAD", "WDWN, no distress"))]
        if extended:
            items += ["HEENT: normocephalic, oropharynx clear", "Neck: supple, no JVD, no thyromegaly",
                      "CV: RRR, no m/r/g", "Lungs: CTAB, no wheezes or crackles",
                      "Abd: soft, NT/ND, normal BS", "Ext: no edema, pulses 2+ bilaterally",
                      "Neuro: A&Ox3, CN II-XII grossly intact"]
        else:
            items += r.sample(["CV: RRR, no murmurs", "Lungs CTAB", "Abd soft, NT",
                               "Ext: no edema"], r.randint(1, 2))
        if self.complaint:
            items.append(self.complaint.exam[0])
        if "diabetes" in self.has and r.random() < 0.6:
            items.append(r.choice(("Feet: decreased monofilament sensation bilat, no ulcers",
                                   "Diabetic foot exam: intact skin, pulses 2+, sensation reduced at toes",
                                   "Fundi: dot-blot hemorrhages OU")))
        if "hypertension" in self.has and r.random() < 0.4:
            items.append(r.choice(("Fundi: mild AV nicking", "PMI displaced laterally",
                                   "trace bilateral ankle edema (on amlodipine)"
                                   if any("amlodipine" in m for m in self.htn_meds) else "S4 present")))
        if "cancer" in self.has and r.random() < 0.6:
            new = self.visit == "new" and self.focus == "cancer"
            items.append(r.choice(("Thin, fatigued appearing" if new else "Port site clean, no erythema",
                                   "Cachectic appearing",
                                   f"Hepatomegaly, liver edge {r.randint(2, 5)} cm below costal margin"
                                   if self.p.cancer_site in ("colon", "pancreas") else "No palpable lymphadenopathy",
                                   "Mild alopecia" if self.chemo and not new else "Mild pallor")))
        return ". ".join(i.rstrip(".") for i in items) + "."

    def labs_items(self, extended: bool) -> list[str]:
        r = self.r
        items: list[str] = []
        if "diabetes" in self.has:
            items.append(_a1c_text(r, self.a1c))
            if r.random() < 0.6:
                fasting = r.random() < 0.6
                items.append(_glucose_text(r, self.fpg if fasting else self.rbg, fasting))
            if r.random() < 0.4 or extended:
                items.append(r.choice((f"UACR {r.randint(32, 240)} mg/g",
                                       f"eGFR {r.randint(52, 88)} mL/min/1.73m²",
                                       f"LDL {r.randint(70, 140)} mg/dL")))
        elif r.random() < 0.35:
            items.append(r.choice((_a1c_text(r, self.a1c), _glucose_text(r, self.fpg, True))))
        if "hypertension" in self.has and (r.random() < 0.5 or extended):
            items.append(f"K {r.uniform(3.4, 4.8):.1f} mmol/L, Cr {r.uniform(0.7, 1.5):.2f} mg/dL")
        if "cancer" in self.has:
            if r.random() < 0.7 or extended:
                items.append(self.marker())
            if r.random() < 0.5 or extended:
                items.append(r.choice((f"Hgb {r.uniform(8.9, 11.6):.1f} g/dL",
                                       f"WBC {r.uniform(2.1, 4.0):.1f}, ANC {r.uniform(0.9, 2.0):.1f}",
                                       f"albumin {r.uniform(2.8, 3.5):.1f} g/dL",
                                       f"AST {r.randint(40, 90)}, ALT {r.randint(38, 95)} U/L")))
        generic = ["CBC wnl", "BMP unremarkable",
                   f"TSH {r.uniform(0.6, 3.8):.1f} mIU/L",
                   f"lipids: TC {r.randint(150, 240)}, LDL {r.randint(70, 160)}, HDL {r.randint(35, 70)}, TG {r.randint(80, 220)} mg/dL",
                   f"vit D {r.randint(14, 48)} ng/mL", f"Na {r.randint(135, 144)}, Cr {r.uniform(0.6, 1.1):.1f}"]
        items += r.sample(generic, 4 if extended else r.randint(0, 2))
        return items

    def imaging_items(self) -> list[str]:
        r, p = self.r, self.p
        items: list[str] = []
        if "cancer" in self.has:
            site_img = {
                "breast": (f"Mammo/US: {self.size} cm irregular mass {p.side} breast at {r.randint(1, 12)} o'clock, BI-RADS 5",
                           "Staging CT C/A/P: no distant metastases",
                           "Bone scan: solitary T8 lesion concerning for metastasis"),
                "lung": (f"CT chest: {self.size} cm spiculated RUL mass with mediastinal lymphadenopathy",
                         "PET-CT: FDG-avid lung mass (SUVmax 11.2), ipsilateral hilar nodes",
                         "Brain MRI: no metastases"),
                "colon": (f"CT A/P: multiple hepatic metastases, largest {self.size} cm",
                          "Restaging CT: interval decrease in liver lesions",
                          "Colonoscopy: circumferential sigmoid mass, biopsy-proven adenocarcinoma"),
                "prostate": ("MRI prostate: PI-RADS 5 lesion L peripheral zone",
                             "Bone scan: osseous metastases L-spine and pelvis",
                             "Biopsy: adenocarcinoma, Gleason 4+3=7 in 6/12 cores"),
                "pancreas": (f"CT: {self.size} cm hypodense pancreatic head mass with biliary dilation",
                             "EUS-FNA: adenocarcinoma",
                             "CT: new peritoneal nodularity c/w metastases"),
            }[p.cancer_site or "lung"]
            items += r.sample(site_img, r.randint(1, 2))
        if "hypertension" in self.has and r.random() < 0.4:
            items.append(r.choice(("ECG: NSR, LVH by voltage criteria", "Echo: concentric LVH, EF 60%",
                                   "ECG: sinus rhythm, no ischemic changes")))
        if "diabetes" in self.has and r.random() < 0.2:
            items.append("Retinal photo: mild NPDR OU")
        if self.complaint and "ankle" in self.complaint.short:
            items.append("XR R ankle: no fracture")
        return items

    def dm_titration(self) -> list[str]:
        """Intensification steps that make sense for this patient's current regimen."""
        meds = " ".join(self.dm_meds)
        out: list[str] = []
        if "metformin 500" in meds:
            out.append("increase metformin to 1000 mg bid")
        if "gliflozin" not in meds:
            out.append("start empagliflozin 10 mg daily (SGLT2i) — counselled re genital mycotic infections")
        if "glargine" in meds:
            out.append("titrate insulin glargine by 2 units q3 days to FBG 80-130")
        elif "semaglutide" not in meds:
            out.append("add semaglutide 0.25 mg weekly, titrate monthly")
        return out or ["start insulin glargine 10 units qHS"]

    def htn_titration(self) -> list[str]:
        """Next antihypertensive step given what the patient already takes."""
        meds = " ".join(self.htn_meds)
        out: list[str] = []
        if "amlodipine 5" in meds:
            out.append("uptitrate amlodipine to 10 mg daily")
        elif "amlodipine" not in meds:
            out.append("add amlodipine 5 mg daily")
        if "HCTZ" not in meds and "chlorthalidone" not in meds:
            out.append("add HCTZ 12.5 mg daily")
        if "lisinopril" in meds and self.r.random() < 0.3:
            out.append("switch lisinopril to losartan 50 mg (ACEi cough)")
        if "lisinopril 10" in meds:
            out.append("increase lisinopril to 20 mg daily")
        if "lisinopril" not in meds and "losartan" not in meds:
            out.append(self.r.choice(("add lisinopril 10 mg daily; BMP in 1-2 wks",
                                      "add losartan 50 mg daily; BMP in 1-2 wks")))
        # Spironolactone is the fourth-line step, only once three classes are on board.
        return out or ["add spironolactone 25 mg daily (resistant HTN)"]

    def problems(self) -> list[tuple[str, list[str]]]:
        """(assessment line, plan items) per problem, focus problem first."""
        r = self.r
        probs: list[tuple[str, list[str]]] = []
        order = list(self.has)
        if self.focus in order and self.visit in ("followup", "new"):
            order.remove(self.focus)
            order.insert(0, self.focus)
        complaint_prob: tuple[str, list[str]] | None = None
        if self.complaint:
            c = self.complaint
            complaint_prob = (c.assessment, r.sample(list(c.plan), r.randint(1, len(c.plan))))
        for cond in order:
            new = self.visit == "new" and cond == self.focus
            if cond == "diabetes":
                n = self.dm_name
                if new:
                    a = r.choice((f"Newly diagnosed {n} (A1c {self.a1c}%)", f"{n}, new dx"))
                elif self.dm_controlled:
                    a = r.choice((f"{n}, well controlled (A1c {self.a1c}%)", f"{n} — at goal"))
                else:
                    a = r.choice((f"{n}, uncontrolled — A1c {self.a1c}%", f"{n}, suboptimally controlled",
                                  f"{n} w/ peripheral neuropathy", f"{n} with hyperglycemia"))
                plan = self.dm_titration() + [
                        "repeat A1c in 3 mo", "annual dilated eye exam, referral placed",
                        "diabetic foot exam today; podiatry referral",
                        "refer to DSMES / dietitian", "urine microalbumin + lipid panel",
                        "BG log, hypoglycemia education"]
                if new:
                    plan = ["start metformin 500 mg daily, titrate to 1000 mg bid",
                            "diabetes education referral", "repeat A1c in 3 mo",
                            "baseline eye exam and foot exam", "glucometer prescribed"]
                elif self.dm_controlled:
                    plan = ["continue current regimen", "repeat A1c in 6 mo", "annual eye exam due"]
            elif cond == "hypertension":
                n = self.htn_name
                if new:
                    a = r.choice((f"Stage 2 {n}, new dx", f"New {n}", f"{n}, newly diagnosed"))
                    plan = ["start amlodipine 5 mg daily", "start lisinopril 10 mg daily; BMP in 1-2 wks",
                            "home BP monitoring, target < 130/80", "DASH diet, sodium < 2 g/day",
                            "baseline ECG, lipids, UA"]
                elif self.htn_controlled:
                    a = r.choice((f"{n}, at goal on current meds", f"{n} — controlled"))
                    plan = ["continue current regimen", "home BP log", "BMP annually"]
                else:
                    a = r.choice((f"{n}, not at goal ({self.sbp}/{self.dbp})", f"{n}, uncontrolled",
                                  f"{n} w/ LVH on prior echo"))
                    plan = self.htn_titration() + [
                        "home BP monitoring, bring log; target < 130/80",
                        "DASH diet, limit sodium", "RTC 4 wks BP check", "BMP in 2 wks"]
            else:
                n = self.cancer_name
                if new:
                    a = r.choice((f"{n}, biopsy-proven, new dx", f"Newly diagnosed {n}"))
                    plan = ["staging CT C/A/P", "oncology consult this week", "discuss at tumour board",
                            "genetic counselling referral", "psychosocial support / SW referral"]
                else:
                    a = r.choice((f"{n}, stage {self.p.stage}, on {self.p.regimen}",
                                  f"Metastatic {n} — ECOG {self.ecog}" if self.p.stage == "IV"
                                  else f"{n}, ECOG {self.ecog}", f"{n}"))
                    plan = [f"trend {self.marker().split()[0]} tumour marker",
                            "palliative care referral for symptom management",
                            "continue per oncology"]
                    if self.chemo:
                        plan += [f"proceed with C{self.cycle + 1} of {self.p.regimen} if counts adequate",
                                 "restaging CT after cycle 6", "ondansetron 8 mg q8h prn nausea",
                                 "neutropenic precautions reviewed"]
                    else:
                        plan += [f"continue {self.p.regimen}", "restaging imaging in 3 mo",
                                 "DEXA for bone health on hormonal therapy"]
            probs.append((a, r.sample(plan, min(len(plan), r.randint(1, 3)))))
        if complaint_prob:
            pos = 0 if self.visit == "complaint" else len(probs)
            probs.insert(pos, complaint_prob)
        if self.visit == "preventive":
            hm = ["flu vaccine given today", "Tdap up to date", "lipid panel ordered",
                  "discussed diet and exercise", "hep C screening done"]
            if self.p.age >= 45:
                hm.append("colonoscopy referral placed")
            if self.p.sex == "F" and self.p.age >= 40:
                hm.append("mammogram ordered")
            probs.append(("Health maintenance", r.sample(hm, r.randint(1, 3))))
        if not probs:
            probs.append(("Well visit", ["routine f/u 1 yr"]))
        return probs

    # ---- assembly

    def build(self) -> str:
        self.detailed = self.tier == "standard" and self.r.random() < 0.2
        if self.tier == "brief":
            text = self._brief()
        else:
            text = self._full(extended=self.tier == "long")
        return self._noise(text)

    def _brief(self) -> str:
        r = self.r
        parts = [self.opener(name_conditions=True)]
        probs = self.problems()
        if self.visit == "new" and self.focus:
            parts.append(_sentence(probs[0][0]))
        facts: list[str] = []
        if "hypertension" in self.has or r.random() < 0.3:
            facts.append(self.bp_text())
        if "diabetes" in self.has:
            facts.append(_a1c_text(r, self.a1c))
        if "cancer" in self.has and r.random() < 0.5:
            facts.append(f"ECOG {self.ecog}")
        if facts and r.random() < 0.8:
            parts.append(_sentence(", ".join(facts)))
        for _slot, neg in self.hard_negatives()[:1]:
            parts.append(_sentence(neg))
        if r.random() < 0.7:
            plan = probs[0][1][0]
            parts.append(_sentence(f"{plan}, {r.choice(('f/u 3 mo', 'f/u prn', 'RTC 4 wks', 'f/u 2 wks'))}"))
        return " ".join(parts)

    def _choose_sections(self, extended: bool) -> list[str]:
        r = self.r
        if extended:
            return list(_CANONICAL_ORDER)
        probs = {"cc": 0.25, "pmh": 0.55, "meds": 0.55, "allergies": 0.25, "fh": 0.2, "sh": 0.2,
                 "ros": 0.2, "vitals": 0.65, "exam": 0.35, "labs": 0.5,
                 "imaging": 0.5 if "cancer" in self.has else 0.1,
                 "assessment": 0.8, "plan": 0.8}
        if self.detailed:
            # A thorough clinician documents most sections: fills the 150-300 word range.
            probs = {k: max(p, 0.85) if k != "imaging" else p for k, p in probs.items()}
        chosen = ["hpi"] + [s for s, p in probs.items() if r.random() < p]
        return [s for s in _CANONICAL_ORDER if s in chosen]

    def _full(self, extended: bool) -> str:
        r = self.r
        sections = self._choose_sections(extended)
        names_elsewhere = "pmh" in sections or "assessment" in sections
        content: dict[str, list[str]] = {s: [] for s in sections}
        content["hpi"] = [self.opener(name_conditions=not names_elsewhere or r.random() < 0.6)]
        content["hpi"] += [_sentence(s) for s in self.hpi_body(extended)]
        if "cc" in sections:
            content["cc"] = [self.complaint.short.format(d=self.d) if self.complaint and self.visit == "complaint"
                             else self.visit_clause().replace("here for ", "").replace("presenting for ", "")]
        if "pmh" in sections:
            content["pmh"] = self.pmh_items()
        if "meds" in sections:
            content["meds"] = self.meds_items()
        if "allergies" in sections:
            content["allergies"] = [r.choice(("NKDA", "NKA", "PCN (rash)", "sulfa - hives", "none known"))]
        if "fh" in sections:
            content["fh"] = self.fh_items()
        if "sh" in sections:
            content["sh"] = [self.sh_text()]
        if "ros" in sections:
            content["ros"] = [self.ros_text(extended)]
        if "vitals" in sections:
            content["vitals"] = [self.vitals_text()]
        if "exam" in sections:
            content["exam"] = [self.exam_text(extended)]
        if "labs" in sections:
            content["labs"] = self.labs_items(extended)
        if "imaging" in sections:
            content["imaging"] = self.imaging_items()
        problems = self.problems()
        # Kept paired so a merged "A/P" block can list each problem with its own plan items.
        self.ap_problems = [(a, list(ps)) for a, ps in problems]
        self.ap_tail = []
        if "assessment" in sections:
            content["assessment"] = [a for a, _ in problems]
        if "plan" in sections:
            content["plan"] = [p for _, ps in problems for p in ps]
            if not any(p.startswith(("f/u", "RTC")) for p in content["plan"]):
                self.ap_tail.append(r.choice(("f/u 3 mo", "RTC 6 wks", "f/u prn", "f/u 2 wks",
                                              "RTC 1 yr" if self.visit == "preventive" else "RTC 3 mo")))
            elif r.random() < 0.3:
                self.ap_tail.append("return precautions reviewed")
            content["plan"] += self.ap_tail
        # Hard negatives land in their natural section when present, else in the HPI.
        for where, neg in self.hard_negatives():
            target = where if where in content else "hpi"
            content[target].append(neg.rstrip(".") if target in _LIST_SECTIONS else _sentence(neg))
            if target == "assessment":
                self.ap_problems.append((neg, []))
        if len(content.get("fh", [])) > 1:
            # "Non-contributory" next to a listed relative's illness would contradict itself.
            content["fh"] = [x for x in content["fh"] if x != "Non-contributory."]
        if extended:
            self._pad_long(content)
        content = {k: v for k, v in content.items() if v}
        return self._render(content)

    def _pad_long(self, content: dict[str, list[str]]) -> None:
        """Grow a long note past one 512-token window with counselling and follow-up prose."""
        r = self.r
        extra = [
            "Discussed the natural history of each chronic problem and the rationale for each "
            "medication; patient verbalized understanding and agreed with the plan.",
            "Reviewed warning signs that should prompt an urgent visit or a call to the clinic, "
            "including chest pain, shortness of breath, new weakness or confusion.",
            "Spent time on lifestyle: a Mediterranean-style diet, at least 150 minutes of moderate "
            "activity per week, limiting alcohol, and consistent sleep timing.",
            "Medication reconciliation completed with the pharmacy fill history; no duplications "
            "or significant interactions identified.",
            "Care coordination: updated problem list, sent summary to the care team, and scheduled "
            "the next appointment before the patient left.",
            "Immunizations reviewed: influenza this season, COVID booster discussed, pneumococcal "
            "and shingles vaccines per age-based schedule.",
            "Total time 45 minutes, more than half spent in counselling and coordination of care.",
            "Patient asked about supplements; advised to bring all bottles to the next visit so "
            "they can be checked against current prescriptions.",
        ]
        extra += [
            "Falls risk screen negative; home safety reviewed, no rugs on stairs, night lights in place.",
            "Depression screen PHQ-2 negative today. Patient reports a good support network of "
            "family and friends and enjoys gardening on weekends.",
            "Advance directive discussed; patient will bring a copy of the health care proxy form "
            "to the next visit and has talked about wishes with family.",
            "Dental visit within the last year; vision check recommended given age and screen time.",
            "Patient prefers text reminders and uses the portal; after-visit summary printed and "
            "reviewed line by line at the end of the appointment.",
            "Questions about travel next month answered; carry medication list and a copy of "
            "recent results, keep medications in carry-on luggage.",
        ]
        if "diabetes" in self.has:
            extra.append("Diabetes self-management: reviewed hypoglycemia symptoms and treatment "
                         "(15 g fast carbohydrate, recheck in 15 min), sick-day rules for metformin "
                         "and SGLT2i, and foot care with daily inspection.")
        if "hypertension" in self.has:
            extra.append("Home BP technique reviewed: seated 5 minutes, arm supported at heart "
                         "level, correct cuff size, two readings morning and evening for a week "
                         "before the next visit.")
        if "cancer" in self.has and self.chemo:
            extra.append("Oncology coordination: reviewed febrile neutropenia precautions (call "
                         "for temperature of 38.0 °C or higher), antiemetic schedule, and goals of "
                         "care; patient wishes to continue treatment at this time.")
        elif "cancer" in self.has:
            extra.append("Oncology coordination: adherence to oral therapy reviewed, side effects "
                         "discussed, goals of care revisited; patient wishes to continue treatment.")
        r.shuffle(extra)
        target = r.randint(410, 560)
        tail: list[str] = []
        while extra and _word_count(" ".join(" ".join(v) for v in content.values()) + " ".join(tail)) < target:
            tail.append(extra.pop())
        # Real long notes break counselling into short paragraphs, not one wall of text.
        paras: list[str] = []
        while tail:
            k = r.randint(2, 3)
            paras.append(" ".join(tail[:k]))
            tail = tail[k:]
        content["counselling"] = paras

    def _render(self, content: dict[str, list[str]]) -> str:
        r = self.r
        style = r.choices(("sections", "soap", "dictation"), (70, 15, 15))[0]
        case = r.choices(("as_is", "upper", "lower"), (60, 30, 10))[0]
        sep = r.choice((": ", ":\n", " - ", ": "))
        bullet = r.choice(("- ", "* ", "• ", "numbered", "inline"))
        merge_ap = r.random() < 0.35 and "assessment" in content and "plan" in content
        blank = r.random() < 0.5

        def header(key: str) -> str:
            h = r.choice(_HEADERS.get(key, (key.title(),)))
            return h.upper() if case == "upper" else h.lower() if case == "lower" else h

        def render_list(items: list[str]) -> str:
            if bullet == "inline" or len(items) == 1:
                return "; ".join(i.rstrip(".") for i in items) + "."
            if bullet == "numbered":
                return "\n".join(f"{i}. {it}" for i, it in enumerate(items, 1))
            return "\n".join(bullet + it for it in items)

        def body(key: str) -> str:
            items = content[key]
            if key in _LIST_SECTIONS or key == "assessment":
                return render_list(items)
            if key == "counselling":
                return "\n\n".join(items)
            return " ".join(_sentence(i) for i in items)

        if style == "dictation":
            paras = []
            for key, items in content.items():
                if key in ("hpi", "counselling"):
                    paras.append(body(key))
                else:
                    paras.append(f"{header(key)}: " + "; ".join(i.rstrip(".") for i in items) + ".")
            return ("\n\n" if r.random() < 0.4 else " ").join(paras)

        blocks: list[str] = []
        if style == "soap":
            groups = {"S": ("cc", "hpi", "pmh", "meds", "allergies", "fh", "sh", "ros"),
                      "O": ("vitals", "exam", "labs", "imaging"), "A": ("assessment",),
                      "P": ("plan", "counselling")}
            for letter, keys in groups.items():
                chunk = []
                for k in keys:
                    if k not in content:
                        continue
                    if k in ("hpi", "counselling") or letter in ("A", "P"):
                        chunk.append(body(k))
                    else:
                        chunk.append(f"{header(k)}: {body(k)}")
                if chunk:
                    blocks.append(f"{letter}:\n" + "\n".join(chunk))
        else:
            keys = list(content)
            if r.random() < 0.1 and "assessment" in keys:
                # Some clinicians lead with the problem list.
                keys.remove("assessment")
                keys.insert(0, "assessment")
            elif r.random() < 0.2:
                mid = [k for k in keys if k in ("pmh", "meds", "fh", "sh", "vitals", "labs", "allergies")]
                shuffled = r.sample(mid, len(mid))
                it = iter(shuffled)
                keys = [next(it) if k in mid else k for k in keys]
            for k in keys:
                if k == "plan" and merge_ap:
                    continue
                if k == "counselling":
                    blocks.append(body(k))
                elif k == "assessment" and merge_ap:
                    lines = []
                    hash_style = r.random() < 0.7
                    for a, ps in self.ap_problems:
                        if hash_style or not ps:
                            lines.append(f"# {a.rstrip('.')}")
                        else:
                            lines.append(f"{a.rstrip('.')}:")
                        lines += [f"- {p}" for p in ps]
                    lines += self.ap_tail
                    blocks.append(f"{header('ap')}{sep if sep != ' - ' else ': '}" + "\n".join(lines))
                elif k == "hpi" and r.random() < 0.25:
                    blocks.append(body(k))  # many notes start straight into the narrative
                else:
                    blocks.append(f"{header(k)}{sep}{body(k)}")
        return ("\n\n" if blank else "\n").join(blocks)

    def _noise(self, text: str) -> str:
        r = self.r
        if r.random() < 0.25:
            text = re.sub(r"\bpatient\b", "pt", text)
            text = re.sub(r"\bfollow-up\b", "f/u", text)
        if r.random() < 0.08:
            text = self._typos(text)
        if r.random() < 0.03:
            text = text.lower()
        return text

    def _typos(self, text: str) -> str:
        r = self.r
        for word, slip in _SPELLING_SLIPS.items():
            if word in text and r.random() < 0.5:
                return text.replace(word, slip, 1)
        words = [m for m in re.finditer(r"\b[a-z]{6,}\b", text) if not _PROTECTED.search(m.group())]
        if not words:
            return text
        m = r.choice(words)
        w = m.group()
        i = r.randint(1, len(w) - 2)
        op = r.choice(("swap", "drop", "double"))
        if op == "swap":
            w2 = w[:i] + w[i + 1] + w[i] + w[i + 2:]
        elif op == "drop":
            w2 = w[:i] + w[i + 1:]
        else:
            w2 = w[:i] + w[i] + w[i:]
        return text[:m.start()] + w2 + text[m.end():]


# --------------------------------------------------------------------------- public API


def _make_patient(r: random.Random, number: int, conditions: tuple[str, ...]) -> _Patient:
    sex = r.choice(("F", "M"))
    if "cancer" in conditions:
        site: str | None = r.choice(_CANCER_SITES_F if sex == "F" else _CANCER_SITES_M)
        age = r.randint(38, 86)
    else:
        site = None
        age = r.randint(34, 84) if conditions else r.randint(18, 78)
    dm_type = 1 if "diabetes" in conditions and r.random() < 0.06 else 2
    other_pmh = tuple(r.sample([x for x in _OTHER_PMH if sex == "M" or x != "BPH"],
                               r.choice((0, 0, 1, 1, 2, 3))))
    bmi = round(r.uniform(27, 39) if "diabetes" in conditions else r.uniform(19, 31), 1)
    if "HLD" in other_pmh and "hyperlipidemia" in other_pmh:
        other_pmh = tuple(x for x in other_pmh if x != "HLD")  # same diagnosis, listed once
    if "obesity" in other_pmh:
        bmi = round(r.uniform(30.5, 42), 1)  # a charted diagnosis must match the charted BMI
    return _Patient(
        patient_id=f"SYN-P{number:04d}",
        conditions=conditions,
        age=age,
        sex=sex,
        cancer_site=site,
        side=r.choice(("L", "R", "left", "right")),
        stage=r.choice(_STAGES),
        regimen=r.choice(_REGIMENS[site]) if site else "",
        diabetes_type=dm_type,
        # Disease duration is capped by age so no one is "HTN x 23 yrs" at 39.
        years_dm=r.randint(1, max(1, min(22, age - 30))),
        years_htn=r.randint(1, max(1, min(25, age - 30))),
        bmi=bmi,
        other_pmh=other_pmh,
        smoker=r.random() < (0.6 if site == "lung" else 0.2),
    )


def _label_plan(r: random.Random, n: int, multi_label_fraction: float) -> list[tuple[str, ...]]:
    """Exact label counts (balanced singles, evenly spread pairs), shuffled."""
    n_multi = round(n * multi_label_fraction)
    n_single = n - n_multi
    plan: list[tuple[str, ...]] = []
    singles: list[tuple[str, ...]] = [("none",), ("diabetes",), ("hypertension",), ("cancer",)]
    for lab in singles:
        plan += [lab] * (n_single // 4)
    # Remainders go to randomly chosen classes so no class is systematically favoured.
    plan += r.sample(singles, n_single % 4)
    plan += [p for _ in range(n_multi // 3) for p in _PAIRS]
    plan += r.sample(list(_PAIRS), n_multi % 3)
    r.shuffle(plan)
    return plan


def generate_demo_notes(
    n: int = 1200, *, seed: int = 13, multi_label_fraction: float = 0.15
) -> list[SyntheticNote]:
    """Generate ``n`` synthetic labelled notes; the same arguments always give the same notes.

    Args:
        n: number of notes (>= 1).
        seed: seed of the private ``random.Random`` (the global RNG is never touched).
        multi_label_fraction: share of notes whose patient has two conditions (0..1); the
            rest are split evenly between none / diabetes / hypertension / cancer.

    Raises:
        ValueError: for n < 1 or a fraction outside [0, 1].
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not isinstance(multi_label_fraction, (int, float)) or not 0.0 <= multi_label_fraction <= 1.0:
        raise ValueError(
            f"multi_label_fraction must be between 0 and 1, got {multi_label_fraction!r}"
        )
    r = random.Random(seed)
    plan = _label_plan(r, n, float(multi_label_fraction))
    # Fixed quotas (not per-note coin flips) so even small corpora get their long notes.
    n_long = round(n * _LONG_SHARE)
    n_brief = round(n * _BRIEF_SHARE)
    tiers = ["long"] * n_long + ["brief"] * n_brief + ["standard"] * (n - n_long - n_brief)
    r.shuffle(tiers)
    patients: dict[tuple[str, ...], list[_Patient]] = {}
    note_counts: dict[str, int] = {}
    seen: set[str] = set()
    notes: list[SyntheticNote] = []
    next_patient = 1
    for i, (labels, tier) in enumerate(zip(plan, tiers), 1):
        conditions = () if labels == ("none",) else labels
        pool = [p for p in patients.get(labels, []) if note_counts[p.patient_id] < 4]
        # About a quarter of notes are repeat visits, so patient-level splits matter.
        if pool and r.random() < 0.25:
            patient = r.choice(pool)
        else:
            patient = _make_patient(r, next_patient, conditions)
            next_patient += 1
            patients.setdefault(labels, []).append(patient)
        note_counts[patient.patient_id] = note_counts.get(patient.patient_id, 0) + 1
        first_visit = note_counts[patient.patient_id] == 1
        # Duplicate texts (same key as training's de-duplication: whitespace and case folded)
        # would be dropped there and skew the label counts, so redraw the rare collision.
        for _ in range(_MAX_RETRIES):
            text = _NoteWriter(r, patient, tier, first_visit).build()
            key = " ".join(text.split()).casefold()
            if key not in seen:
                break
        seen.add(key)
        notes.append(SyntheticNote(f"SYN-{i:05d}", patient.patient_id, text, labels))
    return notes


def demo_notes_frame(notes: Sequence[SyntheticNote]) -> pd.DataFrame:
    """One row per note: note_id, patient_id, text, labels (pipe-joined), synthetic (True)."""
    import pandas as pd

    return pd.DataFrame(
        {
            "note_id": [n.note_id for n in notes],
            "patient_id": [n.patient_id for n in notes],
            "text": [n.text for n in notes],
            "labels": ["|".join(n.labels) for n in notes],
            "synthetic": [True] * len(notes),
        },
        columns=["note_id", "patient_id", "text", "labels", "synthetic"],
    )


def write_demo_csv(path: str | Path, n: int = 1200, seed: int = 13) -> Path:
    """Write the synthetic corpus as a UTF-8 CSV (creating parent folders) and return its path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    demo_notes_frame(generate_demo_notes(n, seed=seed)).to_csv(out, index=False, encoding="utf-8")
    return out
