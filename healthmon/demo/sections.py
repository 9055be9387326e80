"""The sections of one demo note: opener, HPI, PMH, medications, exam, labs, problems and plans.

Each method returns the items of one section for the note's patient and visit; which
sections a note has and how they are laid out is :mod:`healthmon.demo.writer`'s job.
"""

from __future__ import annotations

from healthmon.demo.facts import NoteFacts
from healthmon.demo.vocabulary import OTHER_MEDS, SPARE_MEDS, a1c_text, cap, glucose_text, join_names, sentence


class SectionWriter(NoteFacts):
    """Section contents of one note (the values they quote come from :class:`NoteFacts`)."""

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
            pmh = f" {lead} {join_names(pmh_items, r)}"
        elif not self.has:
            pmh = r.choice((" with no significant PMH", " w/ no chronic medical problems",
                            ", previously healthy,", "", " with no PMH"))
        else:
            pmh = ""
        who = self.age_sex()
        if r.random() < 0.3:
            who = r.choice(("Pt is a ", "Patient is a ", "pt ", "This is a ")) + who
        return sentence(f"{who}{pmh} {self.visit_clause()}")

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
                f"{cap(self.he)} lives with {self.his} spouse and works part-time; "
                f"reports moderate stress but good social support",
                f"{cap(self.he)} is retired and lives alone, independent in ADLs and IADLs"
                if self.p.age >= 65 else
                f"{cap(self.he)} works full time and lives with {self.his} two children",
                f"{cap(self.he)} drives, manages {self.his} own medications with a pill box",
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
        items += [OTHER_MEDS[x] for x in self.p.other_pmh if x in OTHER_MEDS]
        if r.random() < 0.4:
            items.append(r.choice(SPARE_MEDS))
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
            items.append(a1c_text(r, self.a1c))
            if r.random() < 0.6:
                fasting = r.random() < 0.6
                items.append(glucose_text(r, self.fpg if fasting else self.rbg, fasting))
            if r.random() < 0.4 or extended:
                items.append(r.choice((f"UACR {r.randint(32, 240)} mg/g",
                                       f"eGFR {r.randint(52, 88)} mL/min/1.73m²",
                                       f"LDL {r.randint(70, 140)} mg/dL")))
        elif r.random() < 0.35:
            items.append(r.choice((a1c_text(r, self.a1c), glucose_text(r, self.fpg, True))))
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
                   f"lipids: TC {r.randint(150, 240)}, LDL {r.randint(70, 160)}, HDL {r.randint(35, 70)}, "
                   f"TG {r.randint(80, 220)} mg/dL",
                   f"vit D {r.randint(14, 48)} ng/mL", f"Na {r.randint(135, 144)}, Cr {r.uniform(0.6, 1.1):.1f}"]
        items += r.sample(generic, 4 if extended else r.randint(0, 2))
        return items

    def imaging_items(self) -> list[str]:
        r, p = self.r, self.p
        items: list[str] = []
        if "cancer" in self.has:
            site_img = {
                "breast": (f"Mammo/US: {self.size} cm irregular mass {p.side} breast at {r.randint(1, 12)} o'clock, "
                           "BI-RADS 5",
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
