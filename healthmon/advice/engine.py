"""The advice engine: a patient's findings in, each fired rule out with the values that fired it.

Findings are plain values (:class:`PatientFindings`), so the engine is a pure function a
test can drive at a rule's exact boundary, and the dashboard, the CLI and the case report
all get the same advice for the same patient.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from healthmon.advice.rules import URGENCIES, Clause, Rule


@dataclass(frozen=True)
class PatientFindings:
    """Everything a rule may look at for one patient; ``None`` where it is not known.

    Attributes:
        risk: calibrated probability per label (the highest over the patient's scored notes).
        risk_source: per label, where that probability came from ("case 12, model demo-3").
        news2_total / news2_band / news2_red_flag: the latest NEWS2.
        news2_time: when that NEWS2 was scored (ISO text), "partial" when parameters were missing.
        news2_complete: all seven NEWS2 parameters were measured.
        setting: ``hospital`` or ``home``: where the readings were taken (NEWS2 is an acute-care score).
        bp_category / bp_systolic / bp_diastolic / bp_setting: ACC/AHA category of the last week's mean.
        bp_window: which readings that mean covers ("mean of 15 readings, 2026-03-04 to 2026-03-10").
        bp_crisis: any single reading above 180/120 in that week (``None`` without BP readings).
        bp_crisis_readings: those readings, named.
        alerts: ids of the trend and NEWS2 alert rules that fired, with one message each.
        age / sex: demographics, where known.
    """

    patient_id: str
    risk: dict[str, float] = field(default_factory=dict)
    risk_source: dict[str, str] = field(default_factory=dict)
    news2_total: int | None = None
    news2_band: str | None = None
    news2_red_flag: bool | None = None
    news2_time: str | None = None
    news2_complete: bool | None = None
    setting: str | None = None
    bp_category: str | None = None
    bp_systolic: float | None = None
    bp_diastolic: float | None = None
    bp_crisis: bool | None = None
    bp_setting: str | None = None
    bp_window: str = ""
    bp_crisis_readings: tuple[str, ...] = ()
    alerts: dict[str, str] = field(default_factory=dict)
    age: float | None = None
    sex: str | None = None

    def value(self, fact: str) -> Any:
        """The value of a fact for this patient, or None when it is not known."""
        if fact.startswith("risk."):
            return self.risk.get(fact.removeprefix("risk."))
        if fact == "alert":
            return set(self.alerts)
        return getattr(self, fact.replace(".", "_"))


STABLE_FACTS = frozenset({"age", "sex", "setting"})


@dataclass(frozen=True)
class Trigger:
    """One clause that held: the fact, the rule's threshold and the patient's value."""

    fact: str
    op: str
    threshold: Any
    value: Any
    detail: str = ""  # where the value came from, or the alert's message

    def describe(self, *, with_detail: bool = True) -> str:
        """One line a clinician reads: "bp.systolic = 144.5 (<= 180)", "bp.crisis: no", "alert weight_gain_3d: ..."."""
        if self.op == "contains":
            text = f"alert {self.threshold}"
        elif self.op == "missing":
            text = f"no {self.fact} on record"
        elif isinstance(self.value, bool):
            text = f"{self.fact}: {'yes' if self.value else 'no'}"
        elif self.op == "==":
            text = f"{self.fact} = {self.value}"
        elif self.op == "in":
            text = f"{self.fact} = {self.value} (one of {', '.join(self.threshold)})"
        else:
            shown = f"{self.value:.2f}" if self.fact.startswith("risk.") else f"{self.value:g}"
            text = f"{self.fact} = {shown} ({self.op} {self.threshold:g})"
        return text + (f": {self.detail}" if self.detail and with_detail else "")

    def as_dict(self) -> dict[str, Any]:
        threshold = list(self.threshold) if isinstance(self.threshold, tuple) else self.threshold
        return {"fact": self.fact, "op": self.op, "threshold": threshold, "value": self.value, "detail": self.detail,
                "text": self.describe()}


@dataclass(frozen=True)
class Advice:
    """A fired rule and the values that fired it."""

    rule: Rule
    triggers: tuple[Trigger, ...]

    def trigger_dicts(self) -> list[dict[str, Any]]:
        """The triggers as stored and shown; a detail already given by an earlier trigger (the
        same blood-pressure window behind four clauses) is not repeated in the text."""
        out, shown = [], set()
        for trigger in self.triggers:
            entry = trigger.as_dict()
            if trigger.detail and trigger.detail in shown:
                entry["text"] = trigger.describe(with_detail=False)
            shown.add(trigger.detail)
            out.append(entry)
        return out

    @property
    def fingerprint(self) -> str:
        """Same rule and same triggering values -> same fingerprint, so drafting twice stores one draft,
        while a new reading that fires the rule again (different values) makes a new one."""
        # The values and where they came from, not their wording: rephrasing describe() must not re-draft.
        # Age, sex and setting only say the rule applies to this person: a birthday is not a new finding.
        values = [[t.fact, t.op, t.as_dict()["threshold"], None if t.fact in STABLE_FACTS else t.value,
                   None if t.fact in STABLE_FACTS else t.detail] for t in self.triggers]
        payload = json.dumps([self.rule.id, values], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class AdviceResult:
    advice: tuple[Advice, ...]  # most urgent first, then in rule-file order
    unknown: dict[str, tuple[str, ...]]  # rule id -> facts it needed that are not known for this patient


def _holds(clause: Clause, value: Any) -> bool:
    if value is None:
        return False
    op, threshold = clause.op, clause.value
    if op == "contains":
        return threshold in value
    if op == "in":
        return value in threshold
    if op == "==":
        return value == threshold
    value = float(value)
    return {">=": value >= threshold, ">": value > threshold, "<=": value <= threshold, "<": value < threshold}[op]


def _detail(findings: PatientFindings, clause: Clause) -> str:
    if clause.op == "contains":
        return findings.alerts.get(clause.value, "")
    if clause.fact.startswith("risk."):
        return findings.risk_source.get(clause.fact.removeprefix("risk."), "")
    if clause.fact.startswith("news2.") and findings.news2_time:
        return f"scored {findings.news2_time}"
    if clause.fact == "bp.crisis" and findings.bp_crisis_readings:
        # Named readings make each crisis its own finding: a second one weeks later is drafted again.
        return "reading(s) " + ", ".join(findings.bp_crisis_readings)
    if clause.fact.startswith("bp."):
        return findings.bp_window
    return ""


def _trigger(findings: PatientFindings, clause: Clause) -> Trigger:
    value = findings.value(clause.fact)
    if clause.op == "contains":
        value = clause.value
    elif isinstance(value, float) and not clause.fact.startswith("risk."):
        value = round(value, 1)
    return Trigger(clause.fact, clause.op, clause.value, value, _detail(findings, clause))


def evaluate_rule(rule: Rule, findings: PatientFindings) -> tuple[Advice | None, tuple[str, ...]]:
    """(the advice if the rule fires, the facts it needed that are unknown for this patient)."""
    if any(findings.value(name) not in (None, set()) for name in rule.missing):
        return None, ()  # the data the rule asks for exists: it does not apply, and nothing is unknown
    unknown = tuple(dict.fromkeys(c.fact for c in rule.all + rule.any if findings.value(c.fact) is None
                                  and c.op != "contains"))
    if not all(_holds(c, findings.value(c.fact)) for c in rule.all):
        return None, unknown
    held_any = [c for c in rule.any if _holds(c, findings.value(c.fact))]
    if rule.any and not held_any:
        return None, unknown
    triggers = [_trigger(findings, c) for c in rule.all + tuple(held_any)]
    triggers += [Trigger(name, "missing", None, None) for name in rule.missing]
    return Advice(rule, tuple(triggers)), ()


def evaluate(rules: tuple[Rule, ...], findings: PatientFindings) -> AdviceResult:
    """Every rule against one patient's findings.

    Returns:
        The fired advice, most urgent first (rule-file order within an urgency), and for the
        rules that did not fire because a fact was unknown, which facts were missing, so a
        report can say "no blood pressure on record" rather than imply all is well.
    """
    fired, unknown = [], {}
    for rule in rules:
        advice, missing = evaluate_rule(rule, findings)
        if advice is not None:
            fired.append(advice)
        elif missing:
            unknown[rule.id] = missing
    order = {rule.id: i for i, rule in enumerate(rules)}
    fired.sort(key=lambda a: (-URGENCIES.index(a.rule.urgency), order[a.rule.id]))
    return AdviceResult(tuple(fired), unknown)
