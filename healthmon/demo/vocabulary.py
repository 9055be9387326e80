"""Phrase tables of the SYNTHETIC demo notes: condition names, regimens, complaints, lab wording.

Every name, drug and sentence here is invented or textbook wording; nothing comes from a
patient. The tables are shared by the patient maker and the note writer; the small text
helpers (lab values with units, joined lists, sentence case) draw from one ``random.Random``
passed in, so a seed fixes the whole corpus.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

DEMO_LABELS: tuple[str, ...] = ("none", "diabetes", "hypertension", "cancer")

CONDITIONS: tuple[str, ...] = DEMO_LABELS[1:]


# --------------------------------------------------------------------------- phrase banks

DM2_NAMES = (
    "T2DM", "DM2", "type 2 diabetes", "type 2 diabetes mellitus", "DM type 2", "T2D",
    "diabetes mellitus, type 2", "NIDDM", "DM",
)
DM1_NAMES = ("T1DM", "type 1 diabetes", "DM1", "type 1 DM")
HTN_NAMES = (
    "HTN", "hypertension", "essential hypertension", "essential HTN", "high blood pressure",
    "primary hypertension", "htn",
)
CANCER_SITES_F = ("breast", "breast", "lung", "colon", "pancreas")
CANCER_SITES_M = ("prostate", "prostate", "lung", "colon", "pancreas")
REGIMENS = {
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
CONTINUOUS_REGIMENS = frozenset({
    "anastrozole 1 mg daily", "letrozole 2.5 mg daily", "tamoxifen 20 mg daily",
    "osimertinib 80 mg daily", "leuprolide ADT q3mo", "enzalutamide 160 mg daily",
    "abiraterone + prednisone",
})
STAGES = ("I", "IIA", "IIB", "IIIA", "IIIB", "IV", "IV")
OTHER_PMH = (
    "asthma", "GERD", "hypothyroidism", "hyperlipidemia", "HLD", "depression", "anxiety",
    "OA of knees", "migraine", "BPH", "allergic rhinitis", "obesity", "OSA on CPAP",
    "iron deficiency anemia", "eczema", "gout", "hx appendectomy", "s/p cholecystectomy",
)
OTHER_MEDS = {
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
SPARE_MEDS = ("vitamin D3 1000 IU daily", "multivitamin daily", "cetirizine 10 mg prn",
              "ibuprofen 400 mg prn", "melatonin 3 mg qHS", "fish oil")


@dataclass(frozen=True)
class Complaint:
    """An everyday reason for a visit, unrelated to the demo labels; ``{d}`` is filled with a duration."""

    short: str
    hpi: tuple[str, ...]
    exam: tuple[str, ...]
    assessment: str
    plan: tuple[str, ...]
    sex: str | None = None


COMPLAINTS: tuple[Complaint, ...] = (
    Complaint(
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
    Complaint(
        "R ankle pain after inversion injury",
        ("Rolled R ankle playing basketball {d} days ago, swelling over lateral malleolus.",
         "Able to bear weight with limp, no numbness.",
         "Iced it at home, pain 5/10."),
        ("Tender ATFL, mild swelling, no bony tenderness at posterior malleolus; Ottawa neg.",),
        "R ankle sprain, grade I-II",
        ("RICE", "ankle brace", "ibuprofen 400 mg tid with food x 5 days",
         "XR if not improving in 1 wk"),
    ),
    Complaint(
        "low back pain x{d} days",
        ("Onset after lifting boxes while moving house; no radiation to legs.",
         "No saddle anesthesia, no bowel/bladder changes.",
         "Worse with bending, better lying flat."),
        ("Paraspinal muscle tenderness L4-L5, SLR neg bilat, strength 5/5.",),
        "Mechanical low back pain",
        ("PT referral", "heat, gentle stretching", "naproxen 500 mg bid prn x 1 wk",
         "red flags reviewed"),
    ),
    Complaint(
        "L knee pain",
        ("Gradual onset L knee pain over months, worse on stairs.",
         "Morning stiffness < 30 min, no locking or giving way."),
        ("Crepitus L knee, small effusion, full ROM.",),
        "OA L knee",
        ("weight-bearing exercise, quad strengthening", "topical diclofenac gel",
         "consider intra-articular steroid if no improvement"),
    ),
    Complaint(
        "itchy rash on forearms",
        ("Pruritic rash on both forearms after gardening, started {d} days ago.",
         "No new soaps or detergents, no fever."),
        ("Linear erythematous vesicular papules on forearms.",),
        "Contact dermatitis (likely plant)",
        ("triamcinolone 0.1% cream bid x 2 wks", "avoid exposure", "oral antihistamine qHS"),
    ),
    Complaint(
        "heartburn after meals",
        ("Burning epigastric discomfort after large meals and at night.",
         "No dysphagia, no melena, no weight loss.", "Drinks 2-3 coffees/day."),
        ("Abdomen soft, mild epigastric tenderness, no guarding.",),
        "GERD",
        ("trial omeprazole 20 mg daily x 8 wks", "avoid late meals, elevate head of bed"),
    ),
    Complaint(
        "trouble sleeping",
        ("Difficulty falling asleep for ~{d} weeks, work stress.",
         "Uses phone in bed, 2 coffees in afternoon.", "No snoring reported by partner."),
        ("Alert, appropriate affect.",),
        "Insomnia, likely psychophysiologic",
        ("sleep hygiene counselling", "CBT-I resources given", "f/u 6 wks"),
    ),
    Complaint(
        "sneezing and itchy eyes",
        ("Seasonal symptoms every spring: sneezing, clear rhinorrhea, itchy watery eyes.",
         "OTC loratadine partially helps."),
        ("Boggy pale nasal turbinates, mild conjunctival injection.",),
        "Seasonal allergic rhinitis",
        ("fluticasone nasal 2 sprays daily", "cetirizine 10 mg daily during season"),
    ),
    Complaint(
        "dysuria and urinary frequency x{d} days",
        ("Burning with urination and frequency, no flank pain, no fever.",
         "No vaginal discharge. LMP 2 wks ago."),
        ("No CVA tenderness. Mild suprapubic tenderness.",),
        "Uncomplicated cystitis",
        ("UA: + leuk esterase, + nitrite", "nitrofurantoin 100 mg bid x 5 days",
         "urine cx sent"),
        sex="F",
    ),
    Complaint(
        "headaches",
        ("Bilateral band-like headaches late in the day for {d} weeks, no aura.",
         "Long hours at computer, skipping lunch.", "No visual change, no focal weakness."),
        ("Neuro exam nonfocal. Trapezius tenderness bilat.",),
        "Tension-type headache",
        ("ergonomics, regular meals, hydration", "acetaminophen prn, limit to < 10 days/mo",
         "headache diary"),
    ),
    Complaint(
        "R ear pain",
        ("R ear pain and itch after swimming, muffled hearing.",),
        ("R canal edematous with debris, TM intact; tragal tenderness.",),
        "Otitis externa R",
        ("ciprofloxacin/dexamethasone otic drops bid x 7 days", "keep ear dry"),
    ),
    Complaint(
        "red eye with discharge",
        ("Woke with crusting of L eye, gritty sensation, vision normal.",),
        ("L conjunctival injection, mucopurulent discharge, PERRL, VA 20/20.",),
        "Bacterial conjunctivitis",
        ("erythromycin ophthalmic ointment qid x 5 days", "hand hygiene"),
    ),
    Complaint(
        "feeling anxious and stressed",
        ("Increased worry and poor concentration since job change, GAD-7 = 11.",
         "No SI/HI. Sleeping ~6 h."),
        ("Mildly anxious, linear thought process.",),
        "Generalized anxiety, moderate",
        ("counselling referral", "discussed SSRI, pt prefers therapy first",
         "f/u 4 wks"),
    ),
    Complaint(
        "R shoulder pain reaching overhead",
        ("R shoulder pain x{d} weeks after painting ceiling, worse at night lying on R side.",),
        ("Painful arc 70-120 deg, + Neer/Hawkins, strength intact.",),
        "R rotator cuff tendinopathy",
        ("PT referral", "NSAID prn", "activity modification"),
    ),
    Complaint(
        "med refill and forms",
        ("Needs paperwork for new job and refills; no new concerns.",),
        ("No acute findings.",),
        "Administrative visit",
        ("forms completed", "refills sent"),
    ),
)


# --------------------------------------------------------------------------- helpers


def a1c_text(r: random.Random, pct: float) -> str:
    mmol = round((pct - 2.15) * 10.929)
    return r.choice((
        f"HbA1c {pct:.1f}% ({mmol} mmol/mol)",
        f"A1c {pct:.1f}%",
        f"HbA1c {pct:.1f} %",
        f"Hgb A1c: {pct:.1f}%",
        f"HbA1c {mmol} mmol/mol ({pct:.1f}%)",
        f"a1c {pct:.1f}",
    ))


def glucose_text(r: random.Random, mg_dl: int, fasting: bool) -> str:
    mmol = mg_dl / 18.0
    if fasting:
        return r.choice((f"FPG {mg_dl} mg/dL", f"fasting glucose {mmol:.1f} mmol/L",
                         f"FBG {mg_dl} mg/dL", f"fasting BG {mg_dl}mg/dl"))
    return r.choice((f"random glucose {mg_dl} mg/dL", f"glucose {mg_dl} mg/dL (non-fasting)",
                     f"RBG {mmol:.1f} mmol/L", f"POC glucose {mg_dl}"))


def join_names(items: Sequence[str], r: random.Random) -> str:
    if len(items) <= 1:
        return "".join(items)
    if r.random() < 0.5:
        return ", ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def sentence(s: str) -> str:
    s = s.strip()
    if not s:
        return s
    s = cap(s)
    return s if s[-1] in ".!?)" else s + "."

