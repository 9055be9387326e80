"""Plotly figures of a model version's evaluation (plain functions: no Streamlit here).

Every figure is built from the metrics a version's card already holds (written by
``healthmon.training.metrics.classification_metrics`` and the Trainer's log), so the
Models page never re-runs an evaluation to draw them.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from healthmon.types import Prediction
from healthmon.vitals.assess import cuffless_rows
from healthmon.vitals.news2 import zero_point_band
from healthmon.vitals.text import VITALS as VITAL_MEASURES
from healthmon.vitals.trends import rolling_baseline

INK = "#1c2b33"
ACCENT = "#0b6e99"
ALERT = "#c0392b"
MUTED = "#7f8c8d"
ESTIMATE = "#6fa8c7"  # cuffless estimates: the readings' blue, paler, so a dense line of them is told apart

BASELINE_NAME = "usual (28-day median)"
# Above this many points a vital is drawn as a line without a marker per reading, and NEWS2 as a
# stepped line over its bands instead of a bar per time point: a month of minute readings drawn as
# SVG markers and bars took headless Chromium 18 s per draw, and as long again per zoom; as lines,
# under a second (benchmarks/vitals_page_bench.py).
DENSE = 2000
NEWS2_COLOURS = {"low": "#27ae60", "low-medium": "#f39c12", "medium": "#e67e22", "high": ALERT}


def probability_chart(prediction: Prediction, thresholds: dict[str, float]) -> go.Figure:
    """Calibrated probability per label; predicted labels in red, each threshold dotted."""
    labels = list(prediction.probabilities)
    values = [prediction.probabilities[label] for label in labels]
    colors = [ALERT if label in prediction.labels else MUTED for label in labels]
    # Plotly reads tick text as a small HTML subset and number-like names as numbers:
    # escape the (user-supplied) label names and keep the axis categorical.
    fig = go.Figure(go.Bar(x=values, y=[html.escape(label) for label in labels], orientation="h", marker_color=colors,
                           text=[f"{v:.0%}" for v in values], textposition="outside"))
    for i, label in enumerate(labels):
        if label in thresholds:
            fig.add_shape(type="line", x0=thresholds[label], x1=thresholds[label], y0=i - 0.4, y1=i + 0.4,
                          line={"color": INK, "dash": "dot"})
    fig.update_layout(xaxis={"range": [0, 1.1], "tickformat": ".0%", "title": "calibrated probability"},
                      yaxis={"type": "category"}, height=80 + 40 * len(labels), margin={"l": 10, "r": 10, "t": 10, "b": 40})
    return fig


def confusion_figure(metrics: dict[str, Any], labels: list[str]) -> go.Figure | None:
    """Single-label: the label x label confusion matrix. Multi-label: one yes/no matrix per label."""
    matrix = metrics.get("confusion_matrix")
    if matrix:
        names = [html.escape(label) for label in labels]
        fig = go.Figure(go.Heatmap(z=matrix, x=names, y=names, colorscale="Blues", showscale=False,
                                   text=matrix, texttemplate="%{text}", hovertemplate="true %{y}<br>predicted %{x}: %{z}<extra></extra>"))
        fig.update_layout(xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                          xaxis_type="category", yaxis_type="category",
                          height=120 + 45 * len(labels), margin={"l": 10, "r": 10, "t": 30, "b": 10})
        return fig
    per_label = metrics.get("label_confusion") or _label_confusion_from_rates(metrics.get("per_class") or {}, metrics.get("n"))
    if not per_label:
        return None
    names = [label for label in labels if label in per_label]
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[html.escape(n) for n in names], horizontal_spacing=0.06)
    for k, label in enumerate(names, start=1):
        c = per_label[label]
        z = [[c["tn"], c["fp"]], [c["fn"], c["tp"]]]
        fig.add_trace(go.Heatmap(z=z, x=["predicted no", "predicted yes"], y=["true no", "true yes"], colorscale="Blues",
                                 showscale=False, text=z, texttemplate="%{text}"), row=1, col=k)
        fig.update_yaxes(autorange="reversed", showticklabels=k == 1, row=1, col=k)
    fig.update_layout(height=260, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def _label_confusion_from_rates(per_class: dict[str, dict[str, float]], n: int | None) -> dict[str, dict[str, int]]:
    """Counts back from precision/recall/support, for cards written before ``label_confusion``."""
    if not n:
        return {}
    out = {}
    for label, m in per_class.items():
        tp = round(m["recall"] * m["support"])
        fn = m["support"] - tp
        if m["precision"] <= 0 and tp > 0:
            return {}
        fp = round(tp / m["precision"]) - tp if m["precision"] > 0 else 0
        out[label] = {"tp": tp, "fp": fp, "fn": fn, "tn": n - tp - fp - fn}
    return out


def reliability_figure(metrics: dict[str, Any]) -> go.Figure | None:
    """Reliability diagram: mean confidence vs observed frequency per bin (diagonal = perfect)."""
    bins = [b for b in metrics.get("reliability") or [] if b.get("count")]
    if not bins:
        return None
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"color": MUTED, "dash": "dash"},
                             name="perfectly calibrated"))
    fig.add_trace(go.Scatter(
        x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins], mode="lines+markers", name="this model",
        marker={"size": [6 + 14 * (b["count"] / max(c["count"] for c in bins)) ** 0.5 for b in bins], "color": ACCENT},
        customdata=[b["count"] for b in bins],
        hovertemplate="predicted %{x:.0%}<br>observed %{y:.0%}<br>%{customdata} forecasts<extra></extra>"))
    fig.update_layout(xaxis={"title": "predicted probability", "range": [0, 1], "tickformat": ".0%"},
                      yaxis={"title": "observed frequency", "range": [0, 1], "tickformat": ".0%"},
                      height=360, margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return fig


def training_curves(log_history: list[dict[str, Any]]) -> go.Figure | None:
    """Training loss per logging step, and validation loss / macro-F1 per evaluation."""
    train = [r for r in log_history if "loss" in r and "step" in r]
    evals = [r for r in log_history if "eval_loss" in r]
    if not train and not evals:
        return None
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    if train:
        fig.add_trace(go.Scatter(x=[r["step"] for r in train], y=[r["loss"] for r in train], name="training loss",
                                 line={"color": ACCENT}))
    if evals:
        fig.add_trace(go.Scatter(x=[r["step"] for r in evals], y=[r["eval_loss"] for r in evals], name="validation loss",
                                 mode="lines+markers", line={"color": ALERT}))
        if any("eval_macro_f1" in r for r in evals):
            fig.add_trace(go.Scatter(x=[r["step"] for r in evals if "eval_macro_f1" in r],
                                     y=[r["eval_macro_f1"] for r in evals if "eval_macro_f1" in r],
                                     name="validation macro-F1", mode="lines+markers", line={"color": "#27ae60"}),
                          secondary_y=True)
    fig.update_xaxes(title_text="optimiser step")
    fig.update_yaxes(title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="macro-F1", range=[0, 1], secondary_y=True)
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend={"orientation": "h", "y": -0.3})
    return fig


# One colour per fine-tuning stage or compared version, in the order they are drawn.
SERIES_COLOURS = (MUTED, "#e67e22", ACCENT, "#27ae60")


def per_label_f1_figure(series: dict[str, dict[str, Any]], labels: list[str]) -> go.Figure | None:
    """F1 per label, a bar group per label and a bar per series (name -> ``per_class``), e.g. the
    stages of one fine-tune (before, probe-only head, fine-tuned) or two versions side by side."""
    shown = {name: per_class for name, per_class in series.items() if per_class}
    if len(shown) < 2:
        return None
    names = [label for label in labels if any(label in per_class for per_class in shown.values())]
    fig = go.Figure()
    for k, (name, per_class) in enumerate(shown.items()):
        values = [(per_class.get(label) or {}).get("f1") for label in names]
        fig.add_trace(go.Bar(x=[html.escape(label) for label in names], y=values, name=html.escape(name),
                             marker_color=SERIES_COLOURS[k % len(SERIES_COLOURS)],
                             text=[f"{v:.2f}" if v is not None else "" for v in values], textposition="outside"))
    fig.update_layout(barmode="group", xaxis={"type": "category"}, yaxis={"title": "F1", "range": [0, 1.15]},
                      height=340, margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend={"orientation": "h", "y": -0.2})
    return fig


def _same_params(params: dict[str, Any], chosen: dict[str, Any]) -> bool:
    def same(a: Any, b: Any) -> bool:
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            return bool(np.isclose(a, b, rtol=1e-9, atol=0.0))
        return a == b
    return bool(chosen) and all(same(params.get(key), value) for key, value in chosen.items())


def chosen_trial(search: dict[str, Any]) -> int | None:
    """The number of the trial whose parameters the search chose (the best-scoring of those, if several)."""
    chosen = search.get("chosen") or {}
    matching = [t for t in search.get("trials") or [] if _same_params(t.get("params") or {}, chosen)]
    if not matching:
        return None
    best = max(matching, key=lambda t: (t.get("state") == "complete", t.get("value") is not None,
                                        t.get("value") or 0.0))
    return best.get("number")


def _trial_words(trial: dict[str, Any]) -> str:
    params = ", ".join(f"{k} {v:.2g}" if isinstance(v, float) else f"{k} {v}"
                       for k, v in (trial.get("params") or {}).items())
    return html.escape(f"trial {trial.get('number')} ({trial.get('state', '?')}): {params}")


def search_trials_figure(search: dict[str, Any]) -> go.Figure | None:
    """The hyper-parameter search's learning curves: the objective against the optimiser step,
    one line per trial; pruned trials dashed, failed ones dotted, the chosen one drawn thick."""
    trials = [t for t in search.get("trials") or [] if t.get("curve")]
    if not trials:
        return None
    chosen = chosen_trial(search)
    fig = go.Figure()
    for trial in sorted(trials, key=lambda t: t.get("number") == chosen):  # the chosen one on top
        is_chosen = trial.get("number") == chosen
        dash = {"pruned": "dash", "failed": "dot"}.get(trial.get("state", ""), "solid")
        curve = [p for p in trial["curve"] if p.get("value") is not None]
        name = f"trial {trial.get('number')}" + (" (chosen)" if is_chosen else f" ({trial.get('state', '?')})")
        fig.add_trace(go.Scatter(
            x=[p.get("step") for p in curve], y=[p["value"] for p in curve], mode="lines+markers", name=name,
            line={"color": ACCENT if is_chosen else MUTED, "dash": dash, "width": 4 if is_chosen else 1.5},
            marker={"size": 7 if is_chosen else 4}, opacity=1.0 if is_chosen else 0.6,
            hovertemplate=_trial_words(trial) + "<br>step %{x}: %{y:.3f}<extra></extra>"))
    objective = html.escape(str(search.get("objective") or "objective"))
    fig.update_layout(xaxis={"title": "optimiser step"}, yaxis={"title": objective}, height=360,
                      margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return fig


def calibration_interval_figure(test: dict[str, Any]) -> go.Figure | None:
    """Test calibration error before and after calibration, each with its 95% bootstrap interval."""
    rows = [(name, test.get(value), test.get(interval)) for name, value, interval in (
        ("uncalibrated", "ece_uncalibrated", "ece_uncalibrated_interval"), ("calibrated", "ece", "ece_interval"))]
    rows = [(name, value, interval) for name, value, interval in rows
            if value is not None and interval and len(interval) == 2]
    if not rows:
        return None
    fig = go.Figure(go.Scatter(
        x=[value for _, value, _ in rows], y=[name for name, _, _ in rows], mode="markers",
        marker={"size": 12, "color": [MUTED if name == "uncalibrated" else ACCENT for name, _, _ in rows]},
        error_x={"type": "data", "symmetric": False, "array": [max(high - value, 0) for _, value, (_, high) in rows],
                 "arrayminus": [max(value - low, 0) for _, value, (low, _) in rows]},
        customdata=[list(interval) for _, _, interval in rows],
        hovertemplate="%{y}: ECE %{x:.3f} (95% interval %{customdata[0]:.3f} to %{customdata[1]:.3f})<extra></extra>"))
    fig.update_layout(xaxis={"title": "expected calibration error (test; lower is better)", "rangemode": "tozero"},
                      yaxis={"type": "category"}, height=200, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig


def regression_figure(metrics: dict[str, Any]) -> go.Figure | None:
    """Regression versions: mean observed against mean predicted value per bin (diagonal = perfect);
    bigger points hold more notes."""
    bins = [b for b in metrics.get("calibration_curve") or []
            if b.get("count") and b.get("predicted_mean") is not None and b.get("observed_mean") is not None]
    if not bins:
        return None
    xs, ys = [b["predicted_mean"] for b in bins], [b["observed_mean"] for b in bins]
    low, high = min(xs + ys), max(xs + ys)
    biggest = max(b["count"] for b in bins)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", line={"color": MUTED, "dash": "dash"},
                             name="predicted = observed"))
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="lines+markers", name="this model", customdata=[b["count"] for b in bins],
        marker={"size": [6 + 14 * (b["count"] / biggest) ** 0.5 for b in bins], "color": ACCENT},
        hovertemplate="predicted %{x:.3g}<br>observed %{y:.3g}<br>%{customdata} notes<extra></extra>"))
    fig.update_layout(xaxis={"title": "mean predicted value"}, yaxis={"title": "mean observed value"}, height=360,
                      margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return fig


# Normal ranges drawn behind each vital (the NEWS2 0-point band), canonical units.
# The ranges behind the summary's words "low" / "normal" / "high", so the chart and the
# sentence the classifier reads never disagree about what is normal.
NORMAL_BANDS = {m.parameter: (m.low, m.high) for m in VITAL_MEASURES if m.low is not None and m.high is not None}
VITAL_TITLES = {"heart_rate": "heart rate /min", "systolic_bp": "systolic BP mmHg", "diastolic_bp": "diastolic BP mmHg",
                "spo2": "SpO2 %", "respiration_rate": "respiration /min", "temperature": "temperature °C",
                "glucose": "glucose mg/dL", "weight": "weight kg", "steps": "steps", "sleep_minutes": "sleep min"}


# On NEWS2's SpO2 scale 2 (a prescribed 88-92 % target, e.g. hypercapnic respiratory failure)
# 96-100 is not this patient's normal: 88-92 is the target, which the scale scores 0 (on air,
# 93 and above also score 0; on oxygen they score 1-3).
SPO2_SCALE2_TARGET = zero_point_band("spo2_scale2_oxygen")


def _points(readings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A trace's points (time, value, row), as they are or broken at gaps where the line is drawn
    without markers, and those of them such a line cannot show: a reading alone between two gaps
    (a ward round among a watch's minutes, one reading in a night) draws no line."""
    if len(readings) <= DENSE:
        points = pd.DataFrame({"time": readings["time"], "value": readings["value"], "row": np.arange(len(readings))})
        return points, points.iloc[:0]
    points = _broken_at_gaps(readings["time"], readings["value"])
    present = points["value"].notna()
    alone = present & ~present.shift(1, fill_value=False) & ~present.shift(-1, fill_value=False)
    return points, points[alone]


def _add_line(fig: go.Figure, readings: pd.DataFrame, row: int, *, name: str, colour: str, marker: dict,
              dash: str | None = None, trend_only: bool = False) -> None:
    """One vital's readings as a line (with a marker each while they are few), and a marker for
    each reading a dense line cannot show (alone between gaps)."""
    points, alone = _points(readings)
    hover = "%{x}<br>%{y} (cuffless estimate: trend only)<extra></extra>" if trend_only else None
    line = {"color": colour} | ({"dash": dash} if dash else {})
    fig.add_trace(go.Scatter(x=points["time"], y=points["value"], mode=_mode(len(readings)), line=line,
                             marker=marker, showlegend=False,
                             name=f"{name} (trend only)" if trend_only else name, hovertemplate=hover), row=row, col=1)
    if len(alone):
        fig.add_trace(go.Scatter(x=alone["time"], y=alone["value"], mode="markers", showlegend=False,
                                 marker=marker | {"color": colour}, name=f"{name} (between gaps)",
                                 hovertemplate=hover), row=row, col=1)


def _mode(points: int) -> str:
    return "lines+markers" if points <= DENSE else "lines"


def _broken_at_gaps(times: pd.Series, values: pd.Series) -> pd.DataFrame:
    """A dense line's points (columns time, value, row: the point's position in the input), with a
    break (value NaN, row -1) wherever the readings stop for more than an hour and ten of their
    usual intervals: without markers, a line drawn straight across a night the watch was off would
    look like readings. Columns, not lists: plotly checks a list of timestamps one by one."""
    points = pd.DataFrame({"time": pd.to_datetime(pd.Series(times).reset_index(drop=True), utc=True),
                           "value": pd.to_numeric(pd.Series(values).reset_index(drop=True)).astype(float)})
    points["row"] = np.arange(len(points))
    points = points.sort_values("time", kind="stable").reset_index(drop=True)
    if len(points) < 3:
        return points
    spacing = points["time"].diff()
    after = spacing > max(pd.Timedelta("1h"), 10 * spacing.median())
    if not after.any():
        return points
    breaks = pd.DataFrame({"time": points["time"].shift()[after] + spacing[after] / 2, "value": np.nan, "row": -1})
    return pd.concat([points, breaks]).sort_values(["time", "row"], kind="stable").reset_index(drop=True)


def normal_band(parameter: str, spo2_scale: int = 1) -> tuple[float, float]:
    """The band drawn behind ``parameter`` (one of ``NORMAL_BANDS``), on the given SpO2 scale."""
    return SPO2_SCALE2_TARGET if parameter == "spo2" and spo2_scale == 2 else NORMAL_BANDS[parameter]


def vitals_figure(vitals, news2, alerts=None, *, spo2_scale: int = 1,  # noqa: ANN001 - pandas frames of one patient
                  setting: str = "hospital") -> go.Figure | None:
    """Each measured vital over time with its normal band, artefacts as crosses, NEWS2 below
    (bars coloured by band, each parameter's points in the hover), and alert markers; times in UTC.

    ``spo2_scale`` 2 draws the prescribed 88-92 % target as SpO2's band instead of 96-100.
    ``setting`` home, and cuffless blood-pressure estimates among the readings
    (:func:`healthmon.vitals.assess.mark_cuffless`), title the NEWS2 and blood-pressure panels with
    what they are (a ward score applied at home; estimates for trends only), so a screenshot of
    the chart alone says it too.

    ``alerts`` is :func:`healthmon.vitals.alerts.alerts_frame`'s table: every reading that
    fired an alert gets a hollow diamond on its own line, the hover saying which alert.
    """
    present = set(vitals["parameter"])
    shown = [p for p in VITAL_TITLES if p in present]
    if not shown:
        return None
    rows = len(shown) + (1 if len(news2) else 0)
    estimates = cuffless_rows(vitals)

    def title(parameter: str) -> str:
        mine = vitals["parameter"] == parameter
        if not estimates[mine].any():
            return VITAL_TITLES[parameter]
        return VITAL_TITLES[parameter] + (" (cuffless estimates: trend only)" if estimates[mine].all()
                                          else " (with cuffless estimates: trend only)")

    news2_title = "NEWS2 (aggregate" + ("; a ward score applied at home)" if setting == "home" else ")")
    titles = [title(p) for p in shown] + ([news2_title] if len(news2) else [])
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.04)
    row_of = {parameter: row for row, parameter in enumerate(shown, start=1)}
    if len(news2):
        row_of["news2"] = rows
    for parameter in shown:
        row = row_of[parameter]
        values = vitals[vitals["parameter"] == parameter]
        good, bad = values[~values["artefact"]], values[values["artefact"]]
        guessed = estimates[good.index]
        # A trace each, with its own mode: a few cuff readings among many estimates keep their markers.
        measured, estimated = good[~guessed], good[guessed]
        if len(measured):
            _add_line(fig, measured, row, name=parameter, colour=ACCENT, marker={"size": 6})  # plotly's default size
        if len(estimated):  # hollow, dotted and paler: beside cuff readings, which points are estimates must show
            _add_line(fig, estimated, row, name="cuffless estimate", colour=ESTIMATE, dash="dot",
                      marker={"symbol": "circle-open", "size": 8}, trend_only=True)
        if len(bad):
            fig.add_trace(go.Scatter(x=bad["time"], y=bad["value"], mode="markers", showlegend=False,
                                     marker={"symbol": "x", "color": ALERT, "size": 9}, name="artefact (not scored)"),
                          row=row, col=1)
        # The median only: the chart is drawn on every rerun of the page, and the rolling spread
        # would cost about a minute for a month of minute readings.
        usual = rolling_baseline(vitals, parameter, spread=False).dropna(subset=["baseline"])
        if len(usual):
            # The patient's own usual value, against which the trend alerts judge a reading: a
            # shift that stays inside the population's band can still be far from this line.
            fig.add_trace(go.Scatter(
                x=usual["time"], y=usual["baseline"], mode="lines", showlegend=False, name=BASELINE_NAME,
                line={"color": "#7f8c8d", "dash": "dash", "width": 1.5}, customdata=usual["n"].to_numpy(),
                hovertemplate="%{x}<br>usual %{y:.4g} (median of %{customdata} readings in the 28 days before)"
                              "<extra></extra>"),
                row=row, col=1)
        if parameter in NORMAL_BANDS:
            # After the traces: plotly skips shapes on subplots that are still empty.
            low, high = normal_band(parameter, spo2_scale)
            fig.add_hrect(y0=low, y1=high, fillcolor="#27ae60", opacity=0.12, line_width=0, layer="below",
                          row=row, col=1)
    if len(news2):
        points = [c for c in news2.columns if c.startswith("points_")]
        # Column by column, not row by row: a month of minute readings is 43,200 time points.
        lines = [news2[c].map(lambda v, name=html.escape(c.removeprefix("points_").replace("_", " ")):
                              f"{name} {'not measured' if pd.isna(v) else int(v)}") for c in points]
        working = ["<br>".join(parts) for parts in zip(*lines)] if lines else [""] * len(news2)
        hover = "%{x}<br>NEWS2 %{y} (%{customdata[0]})<br>%{customdata[1]}<extra></extra>"
        if len(news2) <= DENSE:
            fig.add_trace(go.Bar(x=news2["time"], y=news2["total"], customdata=list(zip(news2["band"], working)),
                                 marker_color=[NEWS2_COLOURS[b] for b in news2["band"]], showlegend=False,
                                 name="NEWS2", hovertemplate=hover), row=rows, col=1)
        else:
            points, alone = _points(news2.rename(columns={"total": "value"}))
            # customdata stays aligned with the points: a break gets an empty entry.
            hovered = list(zip(news2["band"], working))
            customdata = [hovered[row] if row >= 0 else ("", "") for row in points["row"]]
            fig.add_trace(go.Scatter(x=points["time"], y=points["value"], customdata=customdata, mode="lines",
                                     line={"color": INK, "shape": "hv", "width": 1}, showlegend=False,
                                     name="NEWS2", hovertemplate=hover), row=rows, col=1)
            if len(alone):
                fig.add_trace(go.Scatter(x=alone["time"], y=alone["value"], mode="markers", showlegend=False,
                                         customdata=[hovered[row] for row in alone["row"]], hovertemplate=hover,
                                         marker={"color": [NEWS2_COLOURS[hovered[row][0]] for row in alone["row"]]},
                                         name="NEWS2 (between gaps)"), row=rows, col=1)
            # The aggregate bands behind the line (0-4 low, 5-6 medium, 7+ high) stand in for the bars'
            # colours; a 3 in one parameter (low-medium) is marked by its red-flag alert. After the
            # trace, as the vitals' bands are.
            above_highest = int(news2["total"].max()) + 1
            for low, high, band in ((0, 4.5, "low"), (4.5, 6.5, "medium"), (6.5, max(20, above_highest), "high")):
                fig.add_hrect(y0=low, y1=high, fillcolor=NEWS2_COLOURS[band], opacity=0.12, line_width=0,
                              layer="below", row=rows, col=1)
            fig.update_yaxes(range=[0, max(8, above_highest)], row=rows, col=1)
    patients = set(vitals["patient_id"])  # once: a month of minute readings can fire hundreds of alerts
    for alert in ([] if alerts is None else alerts.to_dict("records")):
        row = row_of.get(alert["parameter"])
        if row is None or alert["patient_id"] not in patients:
            continue
        times, values = zip(*alert["readings"]) if alert["readings"] else ((alert["time"],), (alert["value"],))
        fig.add_trace(go.Scatter(
            x=list(times), y=list(values), mode="markers", showlegend=False, name=f"alert: {alert['rule_id']}",
            marker={"symbol": "diamond-open", "size": 13, "line": {"width": 2},
                    "color": ALERT if alert["severity"] == "high" else "#e67e22"},
            hovertext=html.escape(alert["message"]), hoverinfo="text+x"), row=row, col=1)
    fig.update_xaxes(title_text="time (UTC)", row=rows, col=1)
    fig.update_layout(height=170 * rows + 70, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig
