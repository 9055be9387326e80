"""The case report's use case: gather one patient's stored record, explanations and advice.

Rendering (HTML, PDF) lives in :mod:`healthmon.report`; this module reads the database,
computes any explanation the report needs but nobody stored yet, and hands the CLI and the
API the finished document (:func:`report_document`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from healthmon.advice.engine import evaluate
from healthmon.advice.rules import DEFAULT_RULES, URGENCIES, Rule, load_rules
from healthmon.errors import HealthmonError, IngestError, NotFoundError
from healthmon.explain.render import to_html
from healthmon.model.classifier import Classifier
from healthmon.report.chart import vitals_svg
from healthmon.report.fhir import fhir_json
from healthmon.report.render import MAX_CASES, CaseSection, PatientReport, render_html, render_pdf, strongest_excerpt
from healthmon.services.accounts import SignedIn, require
from healthmon.services.advice import patient_advice
from healthmon.services.explanations import explain_case
from healthmon.services.patients import patient_snapshot
from healthmon.storage.db import transaction
from healthmon.storage.models import Patient
from healthmon.types import CaseView

# format -> (media type, file name suffix), as the Patient page names its downloads
REPORT_FORMATS = {"fhir": ("application/fhir+json", ".fhir.json"), "html": ("text/html; charset=utf-8", ".html"),
                  "pdf": ("application/pdf", ".pdf")}


class ReportDocument(NamedTuple):
    """A rendered report: its bytes, media type and a file name to save it under."""

    content: bytes
    media_type: str
    filename: str


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


def _allowed(factory: sessionmaker[Session], user: SignedIn | str | None) -> str:
    """The report's author: the signed-in clinician or admin (``advice.decide``: the report is a
    clinical document), or the command line's actor name, whose shell access is the authority."""
    return user if isinstance(user, str) else require(factory, user, "advice.decide").name


def _stored_patient(factory: sessionmaker[Session], patient_id: str) -> None:
    with transaction(factory) as s:
        known = s.scalar(select(Patient.id).where(Patient.external_id == patient_id))
    if known is None:
        raise NotFoundError("a stored patient", f"no patient {patient_id!r}",
                            "store notes with a patient_id column, or vitals for that patient, first")


def case_report(factory: sessionmaker[Session], user: SignedIn | str | None, patient_id: str, *,
                generated_by: str | None = None, rules: tuple[Rule, ...] | None = None,
                rules_path: str | Path | None = None, load_classifier: Callable[[str], Classifier] | None = None,
                setting: str | None = None, spo2_scale: int | None = None,
                now: datetime | None = None) -> PatientReport:
    """:func:`build_report` for a caller allowed ``advice.decide`` (or the CLI's actor name).

    ``generated_by`` defaults to the caller's name. Raises NotFoundError for an unknown patient.
    """
    author = _allowed(factory, user)
    _stored_patient(factory, patient_id)
    return build_report(factory, patient_id, generated_by=generated_by or author, rules=rules, rules_path=rules_path,
                        load_classifier=load_classifier, setting=setting, spo2_scale=spo2_scale, now=now)


def _document(content: bytes, fmt: str, patient_id: str) -> ReportDocument:
    media_type, suffix = REPORT_FORMATS[fmt]
    stem = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in patient_id)  # a header value
    return ReportDocument(content, media_type, f"healthmon-report-{stem}{suffix}")


def render_document(report: PatientReport, fmt: str) -> ReportDocument:
    """A gathered report (:func:`case_report`) as ``html`` or ``pdf`` (slow: seconds)."""
    if fmt not in ("html", "pdf"):
        raise IngestError("report format html or pdf", repr(fmt), "ask for html or pdf (fhir: report_document)")
    content = render_pdf(report) if fmt == "pdf" else render_html(report).encode("utf-8")
    return _document(content, fmt, report.snapshot.patient_id)


def report_document(factory: sessionmaker[Session], user: SignedIn | str | None, patient_id: str, fmt: str, *,
                    generated_by: str | None = None, rules: tuple[Rule, ...] | None = None,
                    rules_path: str | Path | None = None, load_classifier: Callable[[str], Classifier] | None = None,
                    setting: str | None = None, spo2_scale: int | None = None,
                    now: datetime | None = None) -> ReportDocument:
    """One patient's case report as ``html`` or ``pdf``, or ``fhir``: the FHIR R4 Bundle (Patient,
    RiskAssessment per label, NEWS2 Observation) of the same snapshot.

    Args:
        user: the signed-in caller, who needs ``advice.decide``, or the command line's actor name.
        load_classifier: computes explanations nobody stored yet (html and pdf; see :func:`build_report`).

    Raises:
        NotFoundError: no such patient. PermissionDenied: a role without ``advice.decide``.
        IngestError: a format other than fhir, html or pdf.
    """
    if fmt not in REPORT_FORMATS:
        raise IngestError("report format fhir, html or pdf", repr(fmt), "ask for one of those")
    if fmt != "fhir":
        return render_document(case_report(factory, user, patient_id, generated_by=generated_by, rules=rules,
                                           rules_path=rules_path, load_classifier=load_classifier, setting=setting,
                                           spo2_scale=spo2_scale, now=now), fmt)
    _allowed(factory, user)
    _stored_patient(factory, patient_id)
    snapshot = patient_snapshot(factory, patient_id, setting=setting, spo2_scale=spo2_scale, now=now)
    return _document(fhir_json(snapshot).encode("utf-8"), fmt, patient_id)
