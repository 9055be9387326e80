"""Advice rules: validated at load, and every bundled rule checked at its firing and non-firing boundary."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from healthmon.advice import AdviceError, PatientFindings, evaluate, load_rules, parse_rules
from healthmon.advice.engine import _holds, evaluate_rule
from healthmon.advice.rules import DEFAULT_RULES, FACTS, Clause, Rule

RULES = load_rules()
BY_ID = {rule.id: rule for rule in RULES}
# Steps just across a boundary: whole numbers for scores and ages, 0.1 mmHg for mean BP, a hair for probabilities.
STEP = {"news2.total": 1, "age": 1, "bp.systolic": 0.1, "bp.diastolic": 0.1}
OTHER_CATEGORY = {"bp.category": "normal", "news2.band": "low", "sex": "male", "bp.setting": "office", "setting": "home"}


def _attribute(fact: str) -> str:
    return fact.replace(".", "_")


def _with(findings: PatientFindings, fact: str, value) -> PatientFindings:  # noqa: ANN001
    if fact.startswith("risk."):
        return dataclasses.replace(findings, risk={**findings.risk, fact.removeprefix("risk."): value})
    if fact == "alert":
        return dataclasses.replace(findings, alerts={value: f"{value} fired"} if value else {})
    return dataclasses.replace(findings, **{_attribute(fact): value})


def _step(fact: str) -> float:
    return 1e-6 if fact.startswith("risk.") else STEP[fact]


def _firing_and_not(clause: Clause) -> tuple[object, object]:
    """The value at which the clause just holds, and the nearest value at which it does not."""
    v = clause.value
    if clause.op == ">=":
        return v, v - _step(clause.fact)
    if clause.op == ">":
        return v + _step(clause.fact), v
    if clause.op == "<=":
        return v, v + _step(clause.fact)
    if clause.op == "<":
        return v - _step(clause.fact), v
    if clause.op == "contains":
        return v, None
    if isinstance(v, bool):
        return v, not v
    if clause.op == "in":
        return v[0], next(c for c in FACTS[clause.fact].values if c not in v)
    return v, OTHER_CATEGORY[clause.fact] if v != OTHER_CATEGORY[clause.fact] else "stage 1 hypertension"


def _base(rule: Rule, chosen_any: Clause | None = None) -> PatientFindings:
    """Findings that fire ``rule``: each fact at one of its clauses' boundary values that meets every clause on it."""
    findings = PatientFindings("p")
    chosen_any = chosen_any or (rule.any[0] if rule.any else None)  # an all clause is tested with one any clause true
    clauses = list(rule.all) + ([chosen_any] if chosen_any else [])
    for fact in dict.fromkeys(c.fact for c in clauses):
        on_fact = [c for c in clauses if c.fact == fact]
        candidates = [_firing_and_not(c)[0] for c in on_fact]
        value = next(v for v in candidates if all(_holds(c, _probe(fact, v)) for c in on_fact))
        findings = _with(findings, fact, value)
    return findings


def _probe(fact: str, value):  # noqa: ANN001, ANN202 - the value as the engine reads it
    return {value} if fact == "alert" else value


CASES = []
for _rule in RULES:
    for _clause in _rule.all:
        CASES.append(pytest.param(_rule.id, "all", _clause, id=f"{_rule.id}:{_clause.fact}{_clause.op}{_clause.value}"))
    for _clause in _rule.any:
        CASES.append(pytest.param(_rule.id, "any", _clause, id=f"{_rule.id}:any:{_clause.fact}{_clause.op}{_clause.value}"))


@pytest.mark.parametrize(("rule_id", "group", "clause"), CASES)
def test_every_clause_of_every_bundled_rule_fires_at_its_boundary_and_not_one_step_beyond(rule_id, group, clause):
    rule = BY_ID[rule_id]
    firing, beyond = _firing_and_not(clause)
    base = _base(rule, clause if group == "any" else None)
    at_boundary = _with(base, clause.fact, firing)
    advice, _ = evaluate_rule(rule, at_boundary)
    assert advice is not None, f"{rule_id} should fire with {clause.fact} = {firing!r}"
    fired_by = {t.fact: t.value for t in advice.triggers}
    assert fired_by[clause.fact] == (firing if not isinstance(firing, float) or clause.fact.startswith("risk.")
                                     else round(firing, 1))
    assert evaluate_rule(rule, _with(base, clause.fact, beyond))[0] is None, (
        f"{rule_id} should not fire with {clause.fact} = {beyond!r}")


@pytest.mark.parametrize("rule_id", [r.id for r in RULES if r.missing])
def test_a_rule_for_missing_data_stops_firing_once_the_data_exists(rule_id):
    rule = BY_ID[rule_id]
    base = _base(rule)
    assert evaluate_rule(rule, base)[0] is not None
    for fact in rule.missing:
        present = _with(base, fact, _firing_and_not(Clause(fact, "==", FACTS[fact].values[0]))[0])
        assert evaluate_rule(rule, present)[0] is None


# The guideline numbers themselves, written out by hand (the table above would pass with any threshold).
@pytest.mark.parametrize(("total", "red_flag", "expected"), [
    (0, False, set()), (1, False, {"news2-low"}), (4, False, {"news2-low"}), (3, True, {"news2-red-flag"}),
    (4, True, {"news2-red-flag"}), (5, False, {"news2-medium"}), (6, True, {"news2-medium"}), (7, False, {"news2-high"}),
    (20, True, {"news2-high"}),
])
def test_news2_rules_follow_the_rcp_response_bands(total, red_flag, expected):
    fired = {a.rule.id for a in evaluate(RULES, PatientFindings("p", news2_total=total, news2_red_flag=red_flag,
                                                                setting="hospital")).advice}
    assert fired == expected
    at_home = {a.rule.id for a in evaluate(RULES, PatientFindings("p", news2_total=total, news2_red_flag=red_flag,
                                                                  setting="home")).advice}
    assert at_home == set()  # NEWS2 is an acute-care score: at home only its alerts prompt a call


@pytest.mark.parametrize(("systolic", "diastolic", "crisis", "category", "expected"), [
    (180.0, 120.0, False, "stage 2 hypertension", {"bp-stage2"}),
    (180.1, 100.0, False, "stage 2 hypertension", {"bp-crisis"}),
    (150.0, 120.1, False, "stage 2 hypertension", {"bp-crisis"}),
    (150.0, 95.0, True, "stage 2 hypertension", {"bp-crisis"}),  # one reading in crisis, the mean is not
    (135.0, 82.0, False, "stage 1 hypertension", {"bp-stage1"}),
    (125.0, 75.0, False, "elevated", {"bp-elevated"}),
    (115.0, 75.0, False, "normal", set()),
])
def test_blood_pressure_rules_follow_acc_aha_2017(systolic, diastolic, crisis, category, expected):
    findings = PatientFindings("p", bp_systolic=systolic, bp_diastolic=diastolic, bp_crisis=crisis, bp_category=category)
    assert {a.rule.id for a in evaluate(RULES, findings).advice} == expected


@pytest.mark.parametrize(("age", "sex", "expected"), [
    (34, None, set()), (35, None, {"diabetes-screen-age"}), (44, "male", {"diabetes-screen-age"}),
    (45, "male", {"diabetes-screen-age", "colorectal-screen-age"}),
    (39, "female", {"diabetes-screen-age"}), (40, "female", {"diabetes-screen-age", "breast-screen-age"}),
    (74, "female", {"diabetes-screen-age", "colorectal-screen-age", "breast-screen-age"}),
    (75, "female", {"diabetes-screen-age", "colorectal-screen-age"}), (76, "male", {"diabetes-screen-age"}),
])
def test_screening_rules_follow_their_age_bands(age, sex, expected):
    assert {a.rule.id for a in evaluate(RULES, PatientFindings("p", age=age, sex=sex)).advice} == expected


def test_fired_advice_names_the_values_and_their_source_and_comes_most_urgent_first():
    findings = PatientFindings("p", risk={"diabetes": 0.83, "cancer": 0.2}, risk_source={"diabetes": "case #4, model v2"},
                               setting="hospital", news2_total=7, news2_red_flag=True, news2_time="2026-03-01 08:00 UTC",
                               alerts={"weight_gain_3d": "Weight 84.0 kg, up 2.5 kg on the lowest of the 3 days before"})
    result = evaluate(RULES, findings)
    assert [a.rule.id for a in result.advice] == ["news2-high", "weight-gain-fluid", "diabetes-risk-test"]  # age unknown
    diabetes = result.advice[-1].triggers[0]
    assert (diabetes.fact, diabetes.value, diabetes.threshold, diabetes.detail) == ("risk.diabetes", 0.83, 0.5,
                                                                                    "case #4, model v2")
    assert diabetes.describe() == "risk.diabetes = 0.83 (>= 0.5): case #4, model v2"
    assert "up 2.5 kg" in result.advice[1].triggers[0].describe()
    # Rules that could not be checked say which facts were missing, rather than implying all is well.
    assert result.unknown["bp-stage2"] == ("bp.category", "bp.crisis", "bp.systolic", "bp.diastolic")
    assert result.unknown["colorectal-screen-age"] == ("age",)
    assert "cancer-risk-refer" not in result.unknown  # known, and below the threshold


def _rules_with(**changes) -> dict:  # noqa: ANN003
    data = tomllib.loads(DEFAULT_RULES.read_text())
    rule = dict(data["rule"][0])
    for key, value in changes.items():
        if value is None:
            rule.pop(key, None)
        else:
            rule[key] = value
    return {"rule": [rule] + data["rule"][1:]}


@pytest.mark.parametrize(("changes", "message"), [
    ({"urgncy": "soon"}, "unknown field(s) ['urgncy']"),
    ({"advice": None}, "missing advice"),
    ({"urgency": "asap"}, "urgency one of routine, soon, urgent, emergency"),
    ({"kind": "referral"}, "kind one of"),
    ({"follow_up_days": -1}, "follow_up_days a whole number"),
    ({"follow_up_days": 2.5}, "follow_up_days a whole number"),
    ({"id": "NEWS2 High"}, "lower-case letters"),
    ({"all": [{"fact": "news2.score", "op": ">=", "value": 7}]}, "a known fact"),
    ({"all": [{"fact": "news2.total", "op": "=>", "value": 7}]}, "an operator among"),
    ({"all": [{"fact": "news2.total", "op": ">=", "value": 25}]}, "0 to 20"),
    ({"all": [{"fact": "risk.diabetes", "op": ">=", "value": 50}]}, "write 0.5, not 50"),
    ({"all": [{"fact": "age", "op": ">=", "value": -1}]}, "0 to 130"),
    ({"all": [{"fact": "risk.diabetes", "op": ">=", "value": 0.8}, {"fact": "risk.diabetes", "op": "<", "value": 0.5}]},
     "conditions on risk.diabetes that some real value can meet"),
    ({"all": [{"fact": "age", "op": ">", "value": 40}, {"fact": "age", "op": "<=", "value": 40}]},
     "conditions on age that some real value can meet"),
    ({"all": [{"fact": "bp.category", "op": "==", "value": "stage 2"}]}, "one of normal, elevated"),
    ({"all": [{"fact": "bp.crisis", "op": ">=", "value": 1}]}, "== true or == false"),
    ({"all": [{"fact": "alert", "op": "contains", "value": "weight_gain"}]}, "contains one of"),
    ({"all": [{"fact": "age", "op": ">=", "value": 40, "units": "years"}]}, "unknown field(s) ['units']"),
    ({"all": [{"fact": "risk.diabetes", "op": ">", "value": 1}]}, "conditions on risk.diabetes that some real value"),
    ({"all": [{"fact": "news2.total", "op": ">", "value": 4}, {"fact": "news2.total", "op": "<", "value": 5}]},
     "conditions on news2.total"),  # whole numbers: nothing lies between 4 and 5
    ({"all": [{"fact": "sex", "op": "==", "value": "female"}, {"fact": "sex", "op": "==", "value": "male"}]},
     "conditions on sex"),
    ({"all": [{"fact": "bp.crisis", "op": "==", "value": True}, {"fact": "bp.crisis", "op": "==", "value": False}]},
     "conditions on bp.crisis"),
    ({"all": [{"fact": "age", "op": ">=", "value": 50}], "any": [{"fact": "age", "op": "<", "value": 40}]},
     "any clause 1: a clause that can hold together with the all clauses"),
    ({"all": [], "any": None}, "at least one clause"),
    ({"missing": ["news2.total"]}, "cannot be both compared and missing"),
])
def test_invalid_rules_are_refused_at_load_with_the_rule_named(changes, message):
    with pytest.raises(AdviceError) as error:
        parse_rules(_rules_with(**changes), origin="rules.toml")
    assert message in str(error.value)
    assert "rules.toml, rule 1" in str(error.value) or "rule 'news2-high'" in str(error.value)
    assert error.value.fix


def test_duplicate_ids_a_bad_file_and_a_missing_file_are_refused(tmp_path):
    data = tomllib.loads(DEFAULT_RULES.read_text())
    with pytest.raises(AdviceError, match="used twice"):
        parse_rules({"rule": data["rule"] + data["rule"][:1]})
    broken = tmp_path / "rules.toml"
    broken.write_text('[[rule]]\nid = "x\n')
    with pytest.raises(AdviceError, match="valid TOML"):
        load_rules(broken)
    with pytest.raises(AdviceError, match="nothing at"):
        load_rules(tmp_path / "absent.toml")
    with pytest.raises(AdviceError, match=r"only \[\[rule\]\] tables"):
        parse_rules({"rules": []})
    with pytest.raises(AdviceError, match=r"rule 1: a \[\[rule\]\] table"):
        parse_rules({"rule": [1]})


def test_the_bundled_rules_cite_a_source_and_cover_every_kind_of_finding():
    facts = {c.fact.split(".")[0] for r in RULES for c in r.all + r.any}
    assert {"news2", "bp", "risk", "alert", "age", "sex"} <= facts
    assert all(len(r.source) > 20 for r in RULES)
    assert BY_ID["bp-stage1"].follow_up == "3 months" and BY_ID["news2-high"].follow_up == "same day"
