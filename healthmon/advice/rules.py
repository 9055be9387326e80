"""Advice rules as data: loaded from TOML and validated before any of them is used.

A rule file a clinician edits is untrusted in a different way from patient text: a typo
(``urgncy``), a threshold on the wrong scale (``risk.diabetes >= 50`` for 50 %) or two
clauses that can never hold together would silently make a rule never fire. So every
field, fact, operator and value is checked at load, and the first problem is raised as an
:class:`AdviceError` that names the rule, what was expected and how to fix it.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from healthmon.errors import HealthmonError
from healthmon.vitals.alert_rules import JUMP_RULES, NEWS2_RULES, SHIFT_RULES
from healthmon.vitals.news2 import RESPONSES

DEFAULT_RULES = Path(__file__).with_name("rules.toml")

URGENCIES = ("routine", "soon", "urgent", "emergency")  # in increasing order
KINDS = ("screening", "lifestyle", "examination", "escalation")
NUMERIC_OPS = (">=", ">", "<=", "<")
OPS = NUMERIC_OPS + ("==", "in", "contains")
RULE_FIELDS = {"id", "title", "source", "kind", "urgency", "follow_up_days", "advice", "all", "any", "missing"}
REQUIRED_FIELDS = ("id", "title", "source", "kind", "urgency", "follow_up_days", "advice")
CLAUSE_FIELDS = {"fact", "op", "value"}
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,79}$")
LABEL_FACT = re.compile(r"^risk\.([A-Za-z0-9 _/()+-]{1,100})$")


class AdviceError(HealthmonError):
    """A rule file (or a stored advice decision) healthmon cannot use."""


@dataclass(frozen=True)
class Fact:
    """What a clause may compare: its type and, for numbers, the range a real value can take."""

    name: str
    kind: str  # number | bool | category | set
    low: float | None = None
    high: float | None = None
    values: tuple[str, ...] = ()
    meaning: str = ""


ALERT_RULE_IDS = tuple(r.rule_id for r in SHIFT_RULES) + tuple(r.rule_id for r in JUMP_RULES) + tuple(NEWS2_RULES)
BP_CATEGORIES = ("normal", "elevated", "stage 1 hypertension", "stage 2 hypertension")
NEWS2_BANDS = tuple(band for band in RESPONSES if band != "low (0)")

FACTS: dict[str, Fact] = {f.name: f for f in (
    Fact("news2.total", "number", 0, 20, meaning="latest NEWS2 total"),
    Fact("news2.band", "category", values=NEWS2_BANDS, meaning="latest NEWS2 response band"),
    Fact("news2.red_flag", "bool", meaning="3 points in a single NEWS2 parameter"),
    Fact("bp.category", "category", values=BP_CATEGORIES, meaning="ACC/AHA 2017 category of the last week's mean"),
    Fact("bp.systolic", "number", 40, 300, meaning="mean systolic BP of the last week, mmHg"),
    Fact("bp.diastolic", "number", 20, 200, meaning="mean diastolic BP of the last week, mmHg"),
    Fact("bp.crisis", "bool", meaning="any single reading above 180 and/or 120 mmHg"),
    Fact("bp.setting", "category", values=("office", "home")),
    Fact("news2.complete", "bool", meaning="all seven NEWS2 parameters measured"),
    Fact("setting", "category", values=("hospital", "home"), meaning="where the readings were taken"),
    Fact("alert", "set", values=ALERT_RULE_IDS, meaning="trend and NEWS2 alert rules that fired"),
    Fact("age", "number", 0, 130, meaning="age in years"),
    Fact("sex", "category", values=("female", "male")),
)}
RISK = Fact("risk.<label>", "number", 0, 1, meaning="calibrated probability of the label")
WHOLE_NUMBER_FACTS = frozenset({"news2.total"})


def fact_for(name: str) -> Fact | None:
    """The catalogue entry for a fact name (``risk.<any label>`` included), or None."""
    if name in FACTS:
        return FACTS[name]
    return RISK if LABEL_FACT.match(name) else None


@dataclass(frozen=True)
class Clause:
    fact: str
    op: str
    value: Any

    def describe(self) -> str:
        return f"{self.fact} {self.op} {self.value!r}"


@dataclass(frozen=True)
class Rule:
    """One advice rule. ``all`` clauses must all hold; of ``any``, at least one (when given);
    every fact in ``missing`` must be unknown for the patient (e.g. "no BP on record")."""

    id: str
    title: str
    source: str
    kind: str
    urgency: str
    follow_up_days: int
    advice: str
    all: tuple[Clause, ...] = ()
    any: tuple[Clause, ...] = ()
    missing: tuple[str, ...] = ()

    @property
    def follow_up(self) -> str:
        days = self.follow_up_days
        if days == 0:
            return "same day"
        if days % 365 == 0:
            return f"{days // 365} year{'s' * (days != 365)}"
        if days % 30 == 0:
            return f"{days // 30} month{'s' * (days != 30)}"
        if days % 7 == 0:
            return f"{days // 7} week{'s' * (days != 7)}"
        return f"{days} day{'s' * (days != 1)}"


def _fail(where: str, expected: str, found: Any, fix: str) -> AdviceError:
    return AdviceError(f"{where}: {expected}", found if isinstance(found, str) else repr(found), fix)


def _clause(raw: Any, where: str) -> Clause:
    if not isinstance(raw, dict):
        raise _fail(where, "a clause table { fact = ..., op = ..., value = ... }", raw, "write the clause as an inline table")
    unknown = set(raw) - CLAUSE_FIELDS
    if unknown:
        raise _fail(where, f"clause fields {sorted(CLAUSE_FIELDS)}", f"unknown field(s) {sorted(unknown)}",
                    "remove or rename them")
    if set(raw) != CLAUSE_FIELDS:
        raise _fail(where, "fact, op and value in every clause", f"missing {sorted(CLAUSE_FIELDS - set(raw))}",
                    "add the missing field(s)")
    name, op, value = raw["fact"], raw["op"], raw["value"]
    fact = fact_for(str(name))
    if fact is None:
        raise _fail(where, f"a known fact ({', '.join(FACTS)} or risk.<label>)", str(name),
                    "use one of those names (see the comment at the top of rules.toml)")
    where = f"{where} ({name})"
    if op not in OPS:
        raise _fail(where, f"an operator among {', '.join(OPS)}", str(op), "use one of those operators")
    if fact.kind == "number":
        if op not in NUMERIC_OPS + ("==",):
            raise _fail(where, f"a comparison ({', '.join(NUMERIC_OPS)}) for a number", op, "compare with >=, >, <= or <")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _fail(where, "a finite number", value, "write the threshold as a number")
        if not fact.low <= value <= fact.high:
            scale = " (probabilities are 0-1: write 0.5, not 50)" if fact is RISK else ""
            raise _fail(where, f"a threshold a real {fact.meaning or name} can take, {fact.low:g} to {fact.high:g}{scale}",
                        value, "correct the threshold")
    elif fact.kind == "bool":
        if op != "==" or not isinstance(value, bool):
            raise _fail(where, "== true or == false", f"{op} {value!r}", "compare the flag with == true or == false")
    elif fact.kind == "category":
        values = value if op == "in" else [value]
        if op not in ("==", "in") or not isinstance(values, list) or not values:
            raise _fail(where, "== \"one value\" or in [\"values\", ...]", f"{op} {value!r}", "use == or in")
        bad = [v for v in values if v not in fact.values]
        if bad:
            raise _fail(where, f"one of {', '.join(fact.values)}", ", ".join(map(repr, bad)), "use the exact wording")
        value = tuple(values) if op == "in" else value
    elif fact.kind == "set":
        if op != "contains" or value not in fact.values:
            raise _fail(where, f"contains one of {', '.join(fact.values)}", f"{op} {value!r}",
                        "name an alert rule id from healthmon.vitals.alert_rules")
    return Clause(str(name), op, value)


def _contradiction(clauses: tuple[Clause, ...]) -> tuple[str, list[Clause]] | None:
    """The fact whose clauses no value can meet together, with those clauses; None if all can hold.

    Numbers start from the range a real value can take (so ``risk.x > 1`` is impossible) and
    whole-number facts step by one (``news2.total > 4`` and ``< 5`` is impossible); categories
    and flags must share a value.
    """
    by_fact: dict[str, list[Clause]] = {}
    for clause in clauses:
        if clause.op != "contains":
            by_fact.setdefault(clause.fact, []).append(clause)
    for name, group in by_fact.items():
        fact = fact_for(name)
        if fact.kind == "number":
            low, low_open, high, high_open = fact.low, False, fact.high, False
            for c in group:
                value, op = c.value, c.op
                if name in WHOLE_NUMBER_FACTS and op in (">", "<"):
                    value, op = (math.floor(value) + 1, ">=") if op == ">" else (math.ceil(value) - 1, "<=")
                if op in (">=", ">", "==") and (value > low or (value == low and op == ">")):
                    low, low_open = value, op == ">"
                if op in ("<=", "<", "==") and (value < high or (value == high and op == "<")):
                    high, high_open = value, op == "<"
            if low > high or (low == high and (low_open or high_open)):
                return name, group
        else:
            allowed = set(fact.values) if fact.kind == "category" else {True, False}
            for c in group:
                allowed &= set(c.value) if c.op == "in" else {c.value}
            if not allowed:
                return name, group
    return None


def _check_satisfiable(rule_id: str, all_clauses: tuple[Clause, ...], any_clauses: tuple[Clause, ...]) -> None:
    """A rule that can never fire is an error, not a silent dead rule: ``all`` clauses that
    contradict each other (``>= 0.8`` and ``< 0.5``), or an ``any`` clause that cannot hold
    together with them (``all: age >= 50``, ``any: age < 40``)."""
    found = _contradiction(all_clauses)
    if found is not None:
        name, group = found
        raise _fail(f"rule {rule_id!r}", f"conditions on {name} that some real value can meet",
                    " and ".join(c.describe() for c in group), "fix the contradictory or out-of-range thresholds")
    for index, clause in enumerate(any_clauses, start=1):
        found = _contradiction(all_clauses + (clause,))
        if found is not None:
            raise _fail(f"rule {rule_id!r}, any clause {index}", "a clause that can hold together with the all clauses",
                        " and ".join(c.describe() for c in found[1]), "fix or remove that clause")


def parse_rules(data: dict[str, Any], *, origin: str = "rules") -> tuple[Rule, ...]:
    """Validated rules from the parsed TOML (a ``rule`` array of tables)."""
    unknown = set(data) - {"rule"}
    if unknown:
        raise _fail(origin, "only [[rule]] tables at the top level", f"{sorted(unknown)}", "put every rule under [[rule]]")
    raw_rules = data.get("rule")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise _fail(origin, "at least one [[rule]] table", "none", "add rules, or use the bundled rules.toml")
    rules, seen = [], set()
    for index, raw in enumerate(raw_rules, start=1):
        if not isinstance(raw, dict):
            raise _fail(f"{origin}, rule {index}", "a [[rule]] table", raw, "write each rule as a [[rule]] table")
        where = f"{origin}, rule {index} ({raw.get('id', 'no id')!r})"
        unknown = set(raw) - RULE_FIELDS
        if unknown:
            raise _fail(where, f"rule fields {', '.join(sorted(RULE_FIELDS))}", f"unknown field(s) {sorted(unknown)}",
                        "remove the field or correct its spelling")
        absent = [f for f in REQUIRED_FIELDS if f not in raw]
        if absent:
            raise _fail(where, f"the fields {', '.join(REQUIRED_FIELDS)}", f"missing {', '.join(absent)}", "add them")
        rule_id = raw["id"]
        if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
            raise _fail(where, "an id of 2-80 lower-case letters, digits and hyphens", rule_id, "rename the rule")
        if rule_id in seen:
            raise _fail(where, "a unique id", f"{rule_id!r} used twice", "rename one of the rules")
        seen.add(rule_id)
        for text_field in ("title", "source", "advice"):
            if not isinstance(raw[text_field], str) or not raw[text_field].strip():
                raise _fail(where, f"a non-empty {text_field}", raw[text_field], f"write the {text_field}")
        if raw["kind"] not in KINDS:
            raise _fail(where, f"kind one of {', '.join(KINDS)}", raw["kind"], "use one of those kinds")
        if raw["urgency"] not in URGENCIES:
            raise _fail(where, f"urgency one of {', '.join(URGENCIES)}", raw["urgency"], "use one of those urgencies")
        days = raw["follow_up_days"]
        if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 3650:
            raise _fail(where, "follow_up_days a whole number of days from 0 (same day) to 3650", days,
                        "write the interval in days, e.g. 90 for 3 months")
        groups = {}
        for group in ("all", "any"):
            raw_group = raw.get(group, [])
            if not isinstance(raw_group, list):
                raise _fail(where, f"{group} = [ clauses ]", raw_group, "write the clauses as a list")
            groups[group] = tuple(_clause(c, f"{where}, {group} clause {i}") for i, c in enumerate(raw_group, 1))
        missing = raw.get("missing", [])
        if not isinstance(missing, list) or any(fact_for(str(m)) is None for m in missing):
            raise _fail(where, "missing = [known fact names]", missing, "name facts from the catalogue")
        if not groups["all"] and not groups["any"]:
            raise _fail(where, "at least one clause in all or any", "none", "add a condition, or the rule would always fire")
        named = {c.fact for c in groups["all"] + groups["any"]}
        if named & set(missing):
            raise _fail(where, "missing facts that no clause also requires", sorted(named & set(missing)),
                        "a fact cannot be both compared and missing")
        _check_satisfiable(rule_id, groups["all"], groups["any"])
        rules.append(Rule(id=rule_id, title=raw["title"].strip(), source=raw["source"].strip(), kind=raw["kind"],
                          urgency=raw["urgency"], follow_up_days=days, advice=raw["advice"].strip(),
                          all=groups["all"], any=groups["any"], missing=tuple(str(m) for m in missing)))
    return tuple(rules)


def load_rules(path: str | Path | None = None) -> tuple[Rule, ...]:
    """The rules of a TOML file (default: the bundled ``rules.toml``), validated.

    Raises:
        AdviceError: the file is missing, not TOML, or a rule is invalid (the message names it).
    """
    path = Path(path) if path else DEFAULT_RULES
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdviceError("an advice rules file", f"nothing at {path}", "set HEALTHMON_ADVICE_RULES to a rules.toml") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AdviceError(f"valid TOML in {path}", str(exc), "fix the syntax at the line given") from None
    return parse_rules(data, origin=str(path.name))
