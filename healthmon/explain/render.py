"""Explanations as HTML (shaded words, legend, tooltips) and as JSON for export.

Note text is untrusted: every piece of it, and every label name, goes through
``html.escape`` before it touches markup, and nothing is ever put in a script, style or
URL context. The fragment carries its own scoped ``<style>`` and uses translucent
backgrounds with inherited text colour, so it reads the same on light and dark themes.
Sign is shown twice, by hue and by underline style, so it does not depend on colour vision.
Every word is bidi-isolated, so a right-to-left override hidden in a note cannot reorder
the words around it.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict

from healthmon.types import Explanation, Faithfulness, TokenAttribution, WordAttribution

# Blue/orange diverging pair: distinguishable with the common colour-vision deficiencies.
TOWARD_RGB = (230, 97, 1)
AGAINST_RGB = (33, 102, 172)
MAX_ALPHA = 0.75
UNDERLINE_SHARE = 0.10

_STYLE = """
<style>
.hm-expl { font-family: inherit; line-height: 1.9; color: inherit; }
.hm-expl .hm-head { font-size: 0.9em; opacity: 0.85; margin-bottom: 0.4em; }
.hm-expl .hm-text { white-space: pre-wrap; word-wrap: break-word; unicode-bidi: isolate; }
.hm-expl .hm-w { border-radius: 3px; padding: 0 1px; color: inherit; unicode-bidi: isolate; }
.hm-expl .hm-pos { border-bottom: 2px solid rgb(230, 97, 1); }
.hm-expl .hm-neg { border-bottom: 2px dotted rgb(33, 102, 172); }
.hm-expl .hm-legend { display: flex; align-items: center; gap: 0.5em; font-size: 0.85em; margin-top: 0.6em; }
.hm-expl .hm-bar { width: 12em; height: 0.8em; border-radius: 3px;
  background: linear-gradient(to right, rgba(33,102,172,0.75), rgba(127,127,127,0.1), rgba(230,97,1,0.75)); }
.hm-expl .hm-warn { color: #b35806; font-weight: 600; }
</style>
"""


def _shade(score: float, scale: float) -> str:
    if scale <= 0 or score == 0:
        return ""
    rgb = TOWARD_RGB if score > 0 else AGAINST_RGB
    alpha = MAX_ALPHA * min(1.0, abs(score) / scale)
    return f"background-color: rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {alpha:.3f});"


def _header(e: Explanation) -> str:
    target = html.escape(e.target)
    score = "predicted value" if e.kind == "value" else "probability"
    parts = [
        f"Why <b>{target}</b>: {score} {e.probability:.3f} (baseline {e.baseline_probability:.3f})",
        f"integration error {e.delta:+.4f} after {e.steps} steps",
    ]
    if not e.converged:
        parts.append(
            f'<span class="hm-warn">error above the {e.tolerance:.3g} tolerance: treat the shading as approximate</span>'
        )
    if e.faithfulness is not None:
        f = e.faithfulness
        parts.append(
            f"faithfulness {html.escape(f.trust)} (removing the top words lowers the score by "
            f"{f.comprehensiveness:.3f} on average, random words by {f.random_comprehensiveness:.3f})"
        )
    if e.baseline_agreement is not None:
        parts.append(f"PAD vs MASK baseline rank agreement {e.baseline_agreement:.2f}")
    parts.append(f"model {html.escape(e.model_version)}")
    return '<div class="hm-head">' + " · ".join(parts) + "</div>"


def to_html(explanation: Explanation, *, header: bool = True) -> str:
    """An HTML fragment: the note with each word shaded by sign and strength, plus a legend.

    Args:
        explanation: what to render.
        header: include the line with probability, integration error and faithfulness.
    """
    e = explanation
    text = e.text
    scale = max((abs(w.score) for w in e.words), default=0.0)
    target = html.escape(e.target)
    # A regression version's words raise or lower the predicted value; a classifier's push toward or against a label.
    up, down = ("raises", "lowers") if e.kind == "value" else ("toward", "against")
    out = [_STYLE, '<div class="hm-expl">']
    if header:
        out.append(_header(e))
    out.append('<div class="hm-text">')
    cursor = 0
    for w in e.words:
        out.append(html.escape(text[cursor : w.start]))
        direction = up if w.score > 0 else down if w.score < 0 else "neutral to"
        tip = f"{text[w.start : w.end]}: {w.score:+.4f} ({direction} {e.target})"
        # Underline only words that matter (>= 10% of the strongest), or every word of a
        # note is underlined and the cue is lost; the shade still shows the small ones.
        strong = scale > 0 and abs(w.score) >= UNDERLINE_SHARE * scale
        css = "hm-w" + ((" hm-pos" if w.score > 0 else " hm-neg") if strong else "")
        out.append(
            f'<span class="{css}" style="{_shade(w.score, scale)}" title="{html.escape(tip, quote=True)}" '
            f'data-score="{w.score:.6f}">{html.escape(text[w.start : w.end])}</span>'
        )
        cursor = w.end
    out.append(html.escape(text[cursor:]))
    out.append("</div>")
    out.append(
        f'<div class="hm-legend"><span>{down} {target}</span><span class="hm-bar"></span>'
        f"<span>{up} {target}</span><span>(strongest word ±{scale:.3f})</span></div>"
    )
    out.append("</div>")
    return "".join(out)


def to_html_page(explanations: list[Explanation], title: str = "healthmon explanations") -> str:
    """A standalone HTML page holding several explanations (used by the CLI's ``--out x.html``)."""
    body = "".join(f"<section>{to_html(e)}</section><hr>" for e in explanations)
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<meta name="color-scheme" content="light dark">'
        "<style>body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def to_dict(explanation: Explanation) -> dict:
    """Plain data: every field of the explanation plus ``relative_delta`` and ``trust``."""
    data = asdict(explanation)
    relative = explanation.relative_delta
    # JSON has no infinity: a zero-width explanation with an error has no relative figure.
    data["relative_delta"] = relative if relative != float("inf") else None
    if explanation.faithfulness is not None:
        data["faithfulness"]["trust"] = explanation.faithfulness.trust
    return data


def from_dict(data: dict) -> Explanation:
    """The explanation back from :func:`to_dict` output (e.g. one stored in the database)."""
    fields = {k: v for k, v in data.items() if k in Explanation.__dataclass_fields__}
    fields["words"] = tuple(WordAttribution(**w) for w in data["words"])
    fields["tokens"] = tuple(TokenAttribution(**t) for t in data["tokens"])
    fields["steps_tried"] = tuple(data["steps_tried"])
    faith = data.get("faithfulness")
    if faith is not None:
        faith = {k: v for k, v in faith.items() if k in Faithfulness.__dataclass_fields__}
        fields["faithfulness"] = Faithfulness(**{**faith, "fractions": tuple(faith["fractions"])})
    return Explanation(**fields)


def to_json(explanation: Explanation, *, indent: int | None = None) -> str:
    """JSON export (one line by default, so a list of them is JSON Lines)."""
    return json.dumps(to_dict(explanation), ensure_ascii=False, indent=indent, allow_nan=False, default=str)
