"""The case report: one document per patient that a clinician can file.

It holds the risk scores and what they mean, the words behind each score (the highlighted
excerpt), the vitals chart and scores, the advice a clinician approved (with its rule,
source and the values that fired it), who reviewed what with which model version, and
when. Drafts never appear as advice: the report lists how many await a decision.

HTML is rendered by Jinja2 with autoescaping on, so note text, comments and names are
escaped wherever they land; the highlighted excerpt is built by
:func:`healthmon.explain.render.to_html`, which escapes every piece of the note itself.
The PDF is the same HTML laid out by WeasyPrint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import jinja2
from sqlalchemy.orm import Session, sessionmaker

from healthmon import __version__
from healthmon.advice.engine import AdviceResult, evaluate
from healthmon.advice.patient import PatientSnapshot, patient_snapshot
from healthmon.advice.rules import DEFAULT_RULES, URGENCIES, Rule, load_rules
from healthmon.advice.store import AdviceView, patient_advice
from healthmon.cases import CaseView, explain_case
from healthmon.errors import ConfigError, HealthmonError
from healthmon.explain.render import to_html
from healthmon.model.classifier import Classifier
from healthmon.report.chart import vitals_svg
from healthmon.storage.models import as_utc
from healthmon.types import Explanation
from healthmon.vitals.news2 import RESPONSES
from healthmon.vitals.series import news2_points

TEMPLATE = Path(__file__).with_name("template.html.j2")
EXCERPT_WORDS = 45  # words either side of the strongest one: enough context to read, short enough to print
MAX_CASES = 10  # the newest scored notes; older ones are counted, not printed


@dataclass(frozen=True)
class CaseSection:
    case: CaseView
    target: str | None  # the label explained
    excerpt_html: str | None  # escaped, highlighted
    excerpt_note: str  # why there is none, or "excerpt of a longer note"


@dataclass(frozen=True)
class PatientReport:
    snapshot: PatientSnapshot
    sections: tuple[CaseSection, ...]
    older_cases: int
    advice: AdviceResult
    approved: tuple[AdviceView, ...]
    dismissed: tuple[AdviceView, ...]
    drafts: int
    rules_file: str
    rules_sha256: str
    generated_at: datetime
    generated_by: str
    chart_svg: str | None


def _excerpt(explanation: Explanation) -> tuple[Explanation, bool]:
    """The explanation cut to the words around its strongest one (offsets shifted to match)."""
    words = explanation.words
    if len(words) <= 2 * EXCERPT_WORDS + 1:
        return explanation, False
    strongest = max(range(len(words)), key=lambda i: abs(words[i].score))
    first, last = max(0, strongest - EXCERPT_WORDS), min(len(words), strongest + EXCERPT_WORDS + 1)
    start, end = words[first].start, words[last - 1].end
    shifted = tuple(dataclasses.replace(w, start=w.start - start, end=w.end - start) for w in words[first:last])
    return dataclasses.replace(explanation, text=explanation.text[start:end], words=shifted), True


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
    excerpt, cut = _excerpt(explanation)
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


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE.parent), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = lambda moment: f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "-"
    env.filters["pct"] = lambda value: f"{value:.0%}"
    # Review times arrive as ISO text in the database connection's zone: shown in UTC like every other time.
    env.filters["iso_utc"] = lambda text: f"{as_utc(datetime.fromisoformat(text)):%Y-%m-%d %H:%M} UTC"
    return env


def render_html(report: PatientReport) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no scripts).

    Two fragments are inserted unescaped, both built by healthmon: the highlighted excerpt
    (``to_html`` escapes every piece of the note) and the chart (matplotlib's SVG, whose
    only text is healthmon's own axis titles). Everything else is autoescaped.
    """
    vitals = report.snapshot.vitals
    latest = vitals.latest_news2 if vitals is not None else None
    response = RESPONSES.get("low (0)" if latest is not None and latest["total"] == 0 else (latest or {}).get("band"))
    points = {} if latest is None else news2_points(latest)
    models = sorted({c.case.version for c in report.sections if c.case.version})
    return _environment().get_template(TEMPLATE.name).render(
        r=report, s=report.snapshot, vitals=vitals, latest=latest, response=response, points=points, models=models,
        version=__version__)


def render_pdf(report: PatientReport) -> bytes:
    """The same HTML laid out as PDF by WeasyPrint (A4, page numbers in the footer)."""
    try:
        import weasyprint
    except OSError as exc:  # Pango missing: WeasyPrint loads it at import
        raise ConfigError("the Pango library that WeasyPrint needs for PDF", str(exc).splitlines()[0],
                          "run `make setup` (it installs libpango-1.0-0 and a font), or download the HTML report") from None
    # WeasyPrint logs a warning for every SVG presentation property it reads without CSS
    # support (matplotlib writes dozens); the chart renders, so they are noise in a server log.
    logger = logging.getLogger("weasyprint")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return weasyprint.HTML(string=render_html(report), base_url=str(TEMPLATE.parent)).write_pdf()
    finally:
        logger.setLevel(level)


def write_report(report: PatientReport, out: str | Path) -> Path:
    """Write HTML or PDF by the file's suffix."""
    out = Path(out)
    if out.suffix.lower() == ".pdf":
        out.write_bytes(render_pdf(report))
    else:
        out.write_text(render_html(report), encoding="utf-8")
    return out
