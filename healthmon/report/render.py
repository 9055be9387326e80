"""The case report rendered: one document per patient that a clinician can file.

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
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jinja2

from healthmon import __version__
from healthmon.advice.engine import AdviceResult
from healthmon.advice.snapshot import PatientSnapshot
from healthmon.errors import ConfigError
from healthmon.types import AdviceView, CaseView, Explanation, as_utc
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


def strongest_excerpt(explanation: Explanation) -> tuple[Explanation, bool]:
    """The explanation cut to the words around its strongest one (offsets shifted to match)."""
    words = explanation.words
    if len(words) <= 2 * EXCERPT_WORDS + 1:
        return explanation, False
    strongest = max(range(len(words)), key=lambda i: abs(words[i].score))
    first, last = max(0, strongest - EXCERPT_WORDS), min(len(words), strongest + EXCERPT_WORDS + 1)
    start, end = words[first].start, words[last - 1].end
    shifted = tuple(dataclasses.replace(w, start=w.start - start, end=w.end - start) for w in words[first:last])
    return dataclasses.replace(explanation, text=explanation.text[start:end], words=shifted), True


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
