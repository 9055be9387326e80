"""The clinical content of one demo note: per-note values and what is said about each condition.

Values (blood pressure, HbA1c, regimen, visit kind) are drawn once per note so every
section quoting them agrees; the sentences about the patient's own conditions and the hard
negatives about conditions they do not have are built here. :mod:`healthmon.demo.sections`
and :mod:`healthmon.demo.writer` turn them into sections and a laid-out note.
"""

from __future__ import annotations

import random

from healthmon.demo.patients import Patient
from healthmon.demo.vocabulary import (
    COMPLAINTS,
    CONDITIONS,
    CONTINUOUS_REGIMENS,
    DM1_NAMES,
    DM2_NAMES,
    HTN_NAMES,
    Complaint,
    glucose_text,
    join_names,
)

# Chance, per condition the patient does NOT have, of planting a hard negative about it.
# Three absent conditions for "none" notes and two for single-condition notes put roughly
# half of them above zero hard negatives, so "condition word present" cannot stand in for
# "condition present" and the model has to learn negation and family-history context.
_HARD_NEGATIVE_P = 0.3


class NoteFacts:
    """What one note says about its patient: values chosen once per note, condition sentences,
    hard negatives; all randomness comes from the passed-in Random."""

    def __init__(self, r: random.Random, patient: Patient, tier: str, first_visit: bool) -> None:
        self.r = r
        self.p = patient
        self.tier = tier
        self.first_visit = first_visit
        self.detailed = False  # set per build(); "standard" notes that document most sections
        self.ap_problems: list[tuple[str, list[str]]] = []
        self.ap_tail: list[str] = []
        self.has = patient.conditions
        self.absent = tuple(c for c in CONDITIONS if c not in patient.conditions)
        f = patient.sex == "F"
        self.he = "she" if f else "he"
        self.his = "her" if f else "his"
        # Chosen once per note so that every section quoting a value agrees with the others.
        self.dm_name = r.choice(DM1_NAMES if patient.diabetes_type == 1 else DM2_NAMES)
        self.htn_name = r.choice(HTN_NAMES)
        self.cancer_name = self._cancer_name() if patient.cancer_site else ""
        self.visit, self.focus = self._visit()
        # A condition diagnosed today is by definition not yet controlled.
        new = self.visit == "new"
        self.dm_controlled = r.random() < 0.25 and not (new and self.focus == "diabetes")
        self.htn_controlled = r.random() < 0.3 and not (new and self.focus == "hypertension")
        self.cycle = r.randint(2, 10)
        self.chemo = bool(patient.regimen) and patient.regimen not in CONTINUOUS_REGIMENS
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

    def _complaint(self) -> Complaint | None:
        r = self.r
        if self.visit != "complaint" and r.random() > 0.15:
            return None
        pool = [c for c in COMPLAINTS if c.sex in (None, self.p.sex)]
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
                f"repeat {glucose_text(r, self.fpg, True)} confirms new {self.dm_name}",
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
                f"{self.dm_name}: taking {join_names([m.split()[0] for m in self.dm_meds], r)}",
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
                    ("assessment", f"R/o diabetes given family hx — A1c {self.a1c}% and FPG {self.fpg} mg/dL, "
                                   "diabetes ruled out."),
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
                    ("labs", f"Screening colonoscopy {r.randint(2016, 2023)}: negative for malignancy, "
                             "2 small hyperplastic polyps removed."),
                    ("labs", "LDCT lung screening: Lung-RADS 2, no suspicious nodule."),
                    ("fh", f"Mother had breast cancer at {r.randint(44, 70)}."),
                    ("fh", "FH: father with prostate ca."),
                    ("fh", "Maternal uncle with colon cancer in his 60s."),
                    ("fh", "Sister dx with ovarian cancer; pt's BRCA testing negative."),
                    ("pmh", "No personal history of cancer."),
                    ("pmh", "no hx of malignancy."),
                    ("hpi", "Denies weight loss, night sweats, or fevers."),
                    ("assessment", "Cervical lymphadenopathy: reactive, excisional biopsy benign — "
                                   "lymphoma ruled out."),
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
                    pool += [("labs", f"PSA {r.uniform(0.3, 2.6):.1f} ng/mL, within normal limits, "
                                      "no prostate cancer concern.")]
            out.append(r.choice(pool))
        return out

    # ---- sections
