"""Lay out one demo note: which sections, in what order and style, then realistic noise.

Brief notes are a few sentences; standard and long notes get sections (headers, SOAP or
dictation style, bullets or inline lists, a merged A/P block), long ones padded past one
512-token window with counselling prose; a few notes get abbreviations, typos or lower case.
"""

from __future__ import annotations

import re

from healthmon.demo.sections import SectionWriter
from healthmon.demo.vocabulary import a1c_text, sentence

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


def _word_count(text: str) -> int:
    return len(text.split())


class NoteWriter(SectionWriter):
    """Composes one note for one patient; all randomness comes from the passed-in Random."""

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
            parts.append(sentence(probs[0][0]))
        facts: list[str] = []
        if "hypertension" in self.has or r.random() < 0.3:
            facts.append(self.bp_text())
        if "diabetes" in self.has:
            facts.append(a1c_text(r, self.a1c))
        if "cancer" in self.has and r.random() < 0.5:
            facts.append(f"ECOG {self.ecog}")
        if facts and r.random() < 0.8:
            parts.append(sentence(", ".join(facts)))
        for _slot, neg in self.hard_negatives()[:1]:
            parts.append(sentence(neg))
        if r.random() < 0.7:
            plan = probs[0][1][0]
            parts.append(sentence(f"{plan}, {r.choice(('f/u 3 mo', 'f/u prn', 'RTC 4 wks', 'f/u 2 wks'))}"))
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
        content["hpi"] += [sentence(s) for s in self.hpi_body(extended)]
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
            content[target].append(neg.rstrip(".") if target in _LIST_SECTIONS else sentence(neg))
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
            return " ".join(sentence(i) for i in items)

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
