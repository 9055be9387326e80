"""The case report's use case: gather one patient's stored record, explanations and advice.

Rendering (HTML, PDF) lives in :mod:`healthmon.report`; this module reads the database
and computes any explanation the report needs but nobody stored yet.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from sqlalchemy.orm import Session, sessionmaker

from healthmon.advice.engine import evaluate
from healthmon.advice.rules import DEFAULT_RULES, URGENCIES, Rule, load_rules
from healthmon.errors import HealthmonError
from healthmon.explain.render import to_html
from healthmon.model.classifier import Classifier
from healthmon.report.chart import vitals_svg
from healthmon.report.render import MAX_CASES, CaseSection, PatientReport, strongest_excerpt
from healthmon.services.advice import patient_advice
from healthmon.services.explanations import explain_case
from healthmon.services.patients import patient_snapshot
from healthmon.types import CaseView


class _NotComputed(HealthmonError):
    """No stored explanation, and the report was asked not to compute one."""


def _stored_only(folder: str) -> Classifier:
    # explain_case returns a stored explanation before it loads a model; reaching here means none is stored.
    raise _NotComputed("a stored explanation", f"none for the version at {folder}", "open the case to compute it")


def _section(factory: sessionmaker[Session], case: CaseView,
             load_classifier: Callable[[str], Classifier] | None) -> CaseSection:
    target = case.predicted[0] if case.predicted else (max(case.probabilities, key=case.probabilities.__getitem__)
                                                        if case.probabilities else None)
    if target is None:
        return CaseSection(case, None, None, "not scored")
    try:
        explanation = explain_case(factory, case, target, load_classifier or _stored_only)
    except _NotComputed:
        return CaseSection(case, target, None, "no explanation computed yet (open the case, or run the "
                                               "report from the CLI, which computes it)")
    except HealthmonError as exc:  # a missing model folder must not block the rest of the report
        return CaseSection(case, target, None, f"explanation unavailable: {exc}")
    excerpt, cut = strongest_excerpt(explanation)
    return CaseSection(case, target, to_html(excerpt, header=False),
                       "excerpt around the strongest word of a longer note" if cut else "")


def build_report(factory: sessionmaker[Session], patient_id: str, *, generated_by: str,
                 rules: tuple[Rule, ...] | None = None, rules_path: str | Path | None = None,
                 load_classifier: Callable[[str], Classifier] | None = None, setting: str | None = None,
                 spo2_scale: int | None = None, now: datetime | None = None) -> PatientReport:
    """Gather one patient's report.

    Args:
        generated_by: who asked for it (a signed-in name, or the CLI's user).
        load_classifier: given, explanations never computed are computed (and stored) with
            the version that scored each note; without it only stored explanations are shown.
        setting: ``hospital`` or ``home``, for NEWS2 and the blood-pressure thresholds; None presets it
            from the stored readings (:func:`healthmon.vitals.assess.readings_setting`).
        spo2_scale: NEWS2's SpO2 scale (2 only for a prescribed 88-92 % target), for the
            score and the chart's SpO2 band; None: the patient's recorded scale (1 where none
            was recorded). The report says which scale it used and why.
    """
    now = now or datetime.now(timezone.utc)
    rules_path = Path(rules_path) if rules_path else DEFAULT_RULES
    rules = rules if rules is not None else load_rules(rules_path)
    snapshot = patient_snapshot(factory, patient_id, setting=setting, spo2_scale=spo2_scale, now=now)
    result = evaluate(rules, snapshot.findings)
    stored = patient_advice(factory, patient_id)
    sections = tuple(_section(factory, case, load_classifier) for case in snapshot.cases[:MAX_CASES])
    vitals = snapshot.vitals
    chart = (vitals_svg(vitals.vitals, vitals.news2, vitals.alerts, spo2_scale=vitals.spo2_scale)
             if vitals is not None else None)
    return PatientReport(
        snapshot=snapshot, sections=sections, older_cases=max(0, len(snapshot.cases) - MAX_CASES), advice=result,
        approved=tuple(sorted((a for a in stored if a.status in ("approved", "edited")),
                              key=lambda a: (-URGENCIES.index(a.urgency), a.id))),
        dismissed=tuple(a for a in stored if a.status == "dismissed"),
        drafts=sum(a.status == "draft" for a in stored), rules_file=rules_path.name,
        rules_sha256=hashlib.sha256(rules_path.read_bytes()).hexdigest()[:12],
        generated_at=now, generated_by=generated_by, chart_svg=chart)
