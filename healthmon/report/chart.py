"""The vitals chart of the case report, as static SVG.

The dashboard's chart is interactive plotly; a filed report needs a picture that prints and
that a PDF can hold without a browser. Plotly's static export needs Chrome through kaleido,
which a clinic's report server may not have, so the report draws the same content (each
vital with the normal band the summary uses, artefacts as crosses, alert readings as
diamonds, NEWS2 bars coloured by band) with matplotlib's SVG backend.
"""

from __future__ import annotations

import io

import matplotlib.dates as mdates
import pandas as pd
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from healthmon.figures import ACCENT, ALERT, NORMAL_BANDS, VITAL_TITLES, normal_band
from healthmon.vitals.assess import cuffless_rows

BAND_COLOURS = {"low": "#27ae60", "low-medium": "#f39c12", "medium": "#e67e22", "high": ALERT}
MAX_PANELS = 6  # beyond this a printed page gets unreadable; the most clinically used vitals come first


# Systolic and diastolic share a panel, as on an observation chart; the rest get one each.
PANELS = (("heart_rate",), ("systolic_bp", "diastolic_bp"), ("spo2",), ("respiration_rate",), ("temperature",),
          ("glucose",), ("weight",), ("steps",), ("sleep_minutes",))


def vitals_svg(vitals: pd.DataFrame, news2: pd.DataFrame, alerts: pd.DataFrame | None = None, *,
               spo2_scale: int = 1) -> str | None:
    """An SVG document of one patient's vitals over time, or None when nothing is plottable.

    ``spo2_scale`` 2 shades the prescribed 88-92 % target as SpO2's band, as the dashboard's
    chart does, so a filed report never shows a scale-2 patient's target as below normal.

    Text in the SVG (axis titles) comes from healthmon's own tables, never from the upload, and
    matplotlib escapes what it writes, so the SVG can be inlined in the report as it is.
    """
    measured = set(vitals["parameter"])
    panels = [tuple(p for p in panel if p in measured) for panel in PANELS]
    panels = [panel for panel in panels if panel][:MAX_PANELS - (0 if news2.empty else 1)]
    if not panels and news2.empty:
        return None
    rows = len(panels) + (0 if news2.empty else 1)
    # A Figure of its own, not pyplot: pyplot's global state is not safe across the
    # dashboard's session threads.
    fig = Figure(figsize=(7.2, 0.95 * rows + 0.4))
    FigureCanvasSVG(fig)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels):
        for parameter, style in zip(panel, ("-", "--")):
            values = vitals[vitals["parameter"] == parameter]
            good, bad = values[~values["artefact"]], values[values["artefact"]]
            if parameter in NORMAL_BANDS and len(panel) == 1:
                ax.axhspan(*normal_band(parameter, spo2_scale), color="#27ae60", alpha=0.10, linewidth=0)
            elif parameter in NORMAL_BANDS:  # two overlapping bands would shade the whole panel: the upper limits instead
                ax.axhline(NORMAL_BANDS[parameter][1], color="#27ae60", linewidth=0.8, linestyle=style)
            ax.plot(good["time"], good["value"], style, marker="o", markersize=2.5, linewidth=1, color=ACCENT)
            if len(bad):
                ax.plot(bad["time"], bad["value"], "x", color=ALERT, markersize=5)
            for alert in ([] if alerts is None else alerts[alerts["parameter"] == parameter].to_dict("records")):
                if alert["readings"]:
                    times, readings = zip(*alert["readings"])
                    ax.plot(times, readings, "D", markerfacecolor="none", markeredgecolor=ALERT, markersize=6)
        title = "BP mmHg" if len(panel) == 2 else VITAL_TITLES[panel[0]]
        if cuffless_rows(vitals[vitals["parameter"].isin(panel)]).any():
            title += "\n(cuffless\nestimates)"  # a printed chart must say so too
        ax.set_ylabel(title, fontsize=7, rotation=0, ha="right", va="center")
        ax.tick_params(labelsize=6.5)
        ax.grid(alpha=0.25, linewidth=0.5)
    if not news2.empty:
        ax = axes[-1]
        ax.bar(news2["time"], news2["total"], width=_bar_width(news2["time"]),
               color=[BAND_COLOURS.get(b, ACCENT) for b in news2["band"]])
        ax.set_ylabel("NEWS2", fontsize=7, rotation=0, ha="right", va="center")
        ax.set_ylim(0, max(7.5, float(news2["total"].max()) + 1))
        ax.axhline(5, color=BAND_COLOURS["medium"], linewidth=0.6, linestyle="--")
        ax.axhline(7, color=ALERT, linewidth=0.6, linestyle="--")
        ax.tick_params(labelsize=6.5)
    axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(mdates.AutoDateLocator()))
    fig.tight_layout(h_pad=0.3)
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]  # drop the XML prologue and doctype: the SVG is inlined into HTML


def _bar_width(times: pd.Series) -> float:
    """Bars a little narrower than the median gap between scores (in days, matplotlib's date unit)."""
    if len(times) < 2:
        return 0.02
    gaps = times.sort_values().diff().dropna().dt.total_seconds() / 86400
    return max(float(gaps.median()) * 0.8, 0.002)
