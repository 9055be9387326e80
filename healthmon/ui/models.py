"""The Models page's sections beyond one evaluation: before / after fine-tuning, the search and
what stopped training, calibration with its intervals, regression versions, and two versions
side by side (with the notes on which they disagree).

Everything is read from the cards as they are: a key an older card lacks shows nothing, never
an error. The table builders are plain functions (tested without a page); the ``*_section``
functions draw them.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from healthmon.errors import HealthmonError
from healthmon.figures import (
    calibration_interval_figure,
    chosen_trial,
    confusion_figure,
    per_label_f1_figure,
    regression_figure,
    search_trials_figure,
    training_curves,
)
from healthmon.services.accounts import SignedIn
from healthmon.services.comparison import MAX_NOTES, Comparison
from healthmon.ui.components import plain, show_error
from healthmon.ui.resources import get_comparison

REGRESSION = "regression"
# Headline metrics, in the order shown; a row appears only when some column has the number.
HEADLINE = {"accuracy": "accuracy", "macro_f1": "macro-F1", "auroc_macro": "AUROC (macro)",
            "ece": "calibration error (ECE)", "mae": "MAE", "rmse": "RMSE", "spearman": "Spearman", "r2": "R²",
            "n": "notes"}
PARAM_WORDS = {"learning_rate": "learning rate", "head_init": "head start", "class_weight": "class weights"}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def is_regression(card: dict[str, Any]) -> bool:
    return _dict(card).get("problem_type") == REGRESSION


def stages(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The test metrics of each stage the card records: before fine-tuning (the fresh head), the
    probe-only head (``head_init: probe``), for a regression version always predicting the training
    mean, and the fine-tuned model, in that order."""
    found = {"before fine-tuning": _dict(metrics.get("before_finetune")),
             "probe-only head": _dict(_dict(metrics.get("head_init")).get("test")),
             "training mean": _dict(metrics.get("train_mean_baseline")),
             "fine-tuned": _dict(metrics.get("test"))}
    return {name: values for name, values in found.items() if values}


def headline_table(columns: dict[str, dict[str, Any]]) -> pd.DataFrame | None:
    """Metric per row, one column per named evaluation (stages, or versions)."""
    rows = [{"metric": words, **{name: m.get(key) if _number(m.get(key)) else None for name, m in columns.items()}}
            for key, words in HEADLINE.items() if any(_number(m.get(key)) for m in columns.values())]
    return pd.DataFrame(rows) if rows else None


def per_label_table(columns: dict[str, dict[str, Any]], labels: list[str],
                    fields: tuple[str, ...] = ("precision", "recall", "f1")) -> pd.DataFrame | None:
    """Per-label metrics of each named evaluation (``per_class``), a column per (name, field)."""
    per_class = {name: _dict(m.get("per_class")) for name, m in columns.items()}
    names = [label for label in labels if any(label in pc for pc in per_class.values())]
    names += sorted({label for pc in per_class.values() for label in pc} - set(names))
    if not names:
        return None
    rows = []
    for label in names:
        row: dict[str, Any] = {"label": label}
        for name, pc in per_class.items():
            for field in fields:
                row[f"{name}: {field}"] = _dict(pc.get(label)).get(field)
        support = [_dict(pc.get(label)).get("support") for pc in per_class.values()]
        if len(set(support) - {None}) == 1:  # the same notes (stages of one run): one column says it
            row["support"] = next(s for s in support if s is not None)
        rows.append(row)
    return pd.DataFrame(rows)


def _value(value: Any) -> str:
    return f"{value:.2g}" if isinstance(value, float) else str(value)


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{PARAM_WORDS.get(k, k)} {_value(v)}" for k, v in params.items())


def search_sentence(search: dict[str, Any]) -> str:
    """What the hyper-parameter search did and chose, in a sentence or two."""
    mode, reason = search.get("mode"), str(search.get("reason") or "").rstrip(".")
    if not search.get("ran"):
        return f"No hyper-parameter search (mode {mode})" + (f": {reason}." if reason else ".")
    trials = [_dict(t) for t in search.get("trials") or []]
    states = {state: sum(t.get("state") == state for t in trials) for state in ("complete", "pruned", "failed")}
    counts = ", ".join(f"{n} {state}" for state, n in states.items() if n)
    words = f"Searched {len(trials)} trial(s) ({counts})" if trials else "Searched"
    if _number(search.get("wall_s")):
        words += f" in {search['wall_s']:.0f} s"
    words += f" (mode {mode})"
    if search.get("objective"):
        words += f", maximising {search['objective']}"
    chosen = _dict(search.get("chosen"))
    words += f"; chose {_params(chosen)}." if chosen else "."
    return words + (f" {reason[0].upper()}{reason[1:]}." if reason else "")


def trials_table(search: dict[str, Any]) -> pd.DataFrame | None:
    """One row per trial: its parameters, how it ended, its objective value, steps and time."""
    trials = [_dict(t) for t in search.get("trials") or []]
    if not trials:
        return None
    chosen = chosen_trial(search)
    rows = []
    for t in trials:
        curve = [_dict(p) for p in t.get("curve") or []]
        rows.append({"trial": t.get("number"), **{PARAM_WORDS.get(k, k): v for k, v in _dict(t.get("params")).items()},
                     "state": t.get("state"), "value": t.get("value") if _number(t.get("value")) else None,
                     "last step": max((p.get("step") for p in curve if _number(p.get("step"))), default=None),
                     "seconds": t.get("wall_s") if _number(t.get("wall_s")) else None,
                     "chosen": t.get("number") == chosen})
    return pd.DataFrame(rows)


def stopping_sentence(train: dict[str, Any]) -> str | None:
    """What ended training and the limits it ran under (None for cards before these were recorded)."""
    limits = []
    if _number(train.get("time_budget_s")):
        limits.append(f"a time budget of {train['time_budget_s'] / 60:.3g} min")
    if _number(train.get("max_epochs")):
        limits.append(f"at most {train['max_epochs']:g} epochs")
    stopped = str(train.get("stopped_by") or "").rstrip(".")
    if not stopped and not limits:
        return None
    words = f"Training stopped: {stopped}." if stopped else "Training ran"
    if limits:
        words += (" Limits: " if stopped else " under ") + " and ".join(limits) + "."
    if _number(train.get("epochs_run")):
        words += f" It ran {train['epochs_run']:.3g} epoch(s)" + (
            f" in {train['wall_s']:.0f} s." if _number(train.get("wall_s")) else ".")
    return words


def _interval(values: Any) -> str:
    if isinstance(values, (list, tuple)) and len(values) == 2 and all(_number(v) for v in values):
        return f" (95% interval {values[0]:.3f} to {values[1]:.3f})"
    return ""


def calibration_sentences(calibration: dict[str, Any], test: dict[str, Any]) -> list[str]:
    """The calibration method and its effect: cross-validated on validation, then on test."""
    lines = []
    if calibration:
        words = f"Calibration method: {calibration.get('method') or 'not named'}"
        if _number(calibration.get("temperature")) and not calibration.get("kept_unscaled"):
            words += f"; temperature {calibration['temperature']:.3g}"
        lines.append(words + ".")
        fitted, unscaled = calibration.get("cv_ece_fitted"), calibration.get("cv_ece_unscaled")
        if _number(fitted) and _number(unscaled):
            lines.append(f"Held out of the fit on validation notes: ECE {unscaled:.3f} unscaled against {fitted:.3f} "
                         "with the fitted temperature.")
            if calibration.get("kept_unscaled"):
                lines.append("The fitted temperature did not lower the error there, so the scores are kept unscaled.")
    if _number(test.get("ece")) and _number(test.get("ece_uncalibrated")):
        lines.append(f"On the test notes: ECE {test['ece_uncalibrated']:.3f}"
                     f"{_interval(test.get('ece_uncalibrated_interval'))} before calibration, {test['ece']:.3f}"
                     f"{_interval(test.get('ece_interval'))} after.")
    return lines


def before_after_section(metrics: dict[str, Any], labels: list[str], *, key: str) -> None:
    """The fine-tuned model's test scores beside those before fine-tuning (and of the probe-only head)."""
    found = stages(metrics)
    if len(found) < 2:
        st.caption("This card records no test scores from before fine-tuning.")
        return
    st.dataframe(headline_table(found), hide_index=True)
    st.caption("All on the same test notes: the untrained head on the base model, the head fitted on frozen "
               "features (when the run started from a probe), always predicting the training mean (regression), "
               "and the fine-tuned, calibrated model.")
    fig = per_label_f1_figure({name: _dict(m.get("per_class")) for name, m in found.items()}, labels)
    if fig is not None:
        st.plotly_chart(fig, key=f"{key}-f1")
    table = per_label_table(found, labels, ("f1",))
    if table is not None:
        st.dataframe(table, hide_index=True)


def search_section(metrics: dict[str, Any], *, key: str) -> None:
    """The hyper-parameter search, what stopped training, and calibration with its intervals."""
    search, train, test = _dict(metrics.get("search")), _dict(metrics.get("train")), _dict(metrics.get("test"))
    shown = False
    if search:
        shown = True
        st.markdown(plain(search_sentence(search)))
        fig = search_trials_figure(search)
        if fig is not None:
            st.plotly_chart(fig, key=f"{key}-trials")
            st.caption("Each line is a trial's objective as it trained; dashed lines were pruned (stopped early "
                       "because they trailed), dotted ones failed; the thick line is the trial chosen.")
        table = trials_table(search)
        if table is not None:
            st.dataframe(table, hide_index=True)
    stop = stopping_sentence(train)
    if stop:
        shown = True
        st.markdown(plain(stop))
    lines = calibration_sentences(_dict(metrics.get("calibration")), test)
    if lines and (metrics.get("calibration") or test.get("ece_interval") or test.get("ece_uncalibrated_interval")):
        shown = True
        for line in lines:
            st.markdown(plain(line))
        fig = calibration_interval_figure(test)
        if fig is not None:
            st.plotly_chart(fig, key=f"{key}-ece")
    if not shown:
        st.caption("This card records no search, stopping rule or calibration details "
                   "(it was trained before healthmon recorded them).")


def regression_section(evaluation: dict[str, Any], card: dict[str, Any], *, key: str) -> None:
    """A regression version: MAE, RMSE and Spearman, predicted against observed, training curves."""
    cols = st.columns(4)
    for col, (name, words) in zip(cols, (("mae", "MAE"), ("rmse", "RMSE"), ("spearman", "Spearman"), ("n", "Notes"))):
        value = evaluation.get(name)
        col.metric(words, f"{value:.3f}" if _number(value) and name != "n" else str(value) if _number(value) else "—")
    tabs = st.tabs(["Predicted vs observed", "Training curves"])
    with tabs[0]:
        fig = regression_figure(evaluation)
        if fig is not None:
            st.plotly_chart(fig, key=f"{key}-observed")
            st.caption("Notes binned by predicted value: points on the dashed line mean the predictions are right "
                       "on average; bigger points hold more notes.")
        else:
            st.caption("No calibration curve in this card.")
    with tabs[1]:
        fig = training_curves(card.get("training_log") or [])
        if fig is not None:
            st.plotly_chart(fig, key=f"{key}-curves")
        else:
            st.caption("No training log in this card.")


def disagreement_table(result: Comparison) -> pd.DataFrame:
    """The disagreements as rows: note text, gold label(s), each version's labels and probability."""
    first, second = result.first, result.second
    # st.dataframe shows cell text as text, never as markdown or HTML: the note is not escaped here
    # (escaping would show its backslashes), as on the Notes page.
    return pd.DataFrame([{"note": d.text, "gold": ", ".join(d.gold),
                          f"{first}: predicted": ", ".join(d.first) or "(none)",
                          f"{first}: probability": d.first_probability,
                          f"{second}: predicted": ", ".join(d.second) or "(none)",
                          f"{second}: probability": d.second_probability,
                          "right": {"first": first, "second": second}.get(d.right, "neither")}
                         for d in result.disagreements],
                        columns=["note", "gold", f"{first}: predicted", f"{first}: probability",
                                 f"{second}: predicted", f"{second}: probability", "right"])


def comparison_words(result: Comparison) -> list[str]:
    """The comparison's counts, and what the table leaves out, in sentences."""
    n = result.scored
    lines = [(f"On {n} test note(s) of {result.first}: {result.first} is right on {result.first_correct} "
              f"({result.first_correct / n:.0%}), {result.second} on {result.second_correct} "
              f"({result.second_correct / n:.0%}); they disagree on {result.disagreeing}.")]
    if result.truncated:
        lines.append(f"Scored the first {n} of the {result.available} stored test notes: the comparison stops at "
                     f"{MAX_NOTES} notes so that it answers in seconds.")
    if result.hidden:
        lines.append(f"Showing {len(result.disagreements)} of the {result.disagreeing} disagreements, those exactly "
                     "one version gets right first.")
    return lines


def _side_by_side(versions: list[dict[str, Any]], key: str) -> None:
    columns = {v["name"]: _dict(_dict(v["metrics"]).get("test")) for v in versions}
    table = headline_table(columns)
    if table is not None:
        st.dataframe(table, hide_index=True)
        st.caption("Each version on its own test notes, as its card records.")
    if any(is_regression(v["card"]) for v in versions):
        for col, v in zip(st.columns(2), versions):
            with col:
                st.caption(plain(v["name"]))
                fig = regression_figure(columns[v["name"]]) if is_regression(v["card"]) else None
                if fig is not None:
                    st.plotly_chart(fig, key=f"{key}-observed-{v['name']}")
        return
    labels = list(dict.fromkeys(label for v in versions for label in _dict(v["card"]).get("labels", [])))
    table = per_label_table(columns, labels)
    if table is not None:
        st.dataframe(table, hide_index=True)
    fig = per_label_f1_figure({v["name"]: _dict(columns[v["name"]].get("per_class")) for v in versions}, labels)
    if fig is not None:
        st.plotly_chart(fig, key=f"{key}-f1")
    for col, v in zip(st.columns(2), versions):
        with col:
            st.caption(plain(f"Confusion: {v['name']}"))
            fig = confusion_figure(columns[v["name"]], list(_dict(v["card"]).get("labels", [])))
            if fig is not None:
                st.plotly_chart(fig, key=f"{key}-confusion-{v['name']}")
            else:
                st.caption("No confusion counts in this card.")


def compare_section(versions: list[dict[str, Any]], user: SignedIn, default: str) -> None:
    """Pick two versions: their test metrics side by side, then (on demand) both scored on the
    first one's test notes, with the notes on which they disagree. ``default`` is the first
    version offered (the active one: a fixed default, so a choice survives other widgets)."""
    st.subheader("Compare two versions")
    names = [v["name"] for v in versions]
    if len(names) < 2:
        st.caption("Only one version is registered: there is nothing to compare it with yet.")
        return
    left, right = st.columns(2)
    first = left.selectbox("First version (its test notes are the common set)", names, index=names.index(default),
                           key="compare_first")
    second = right.selectbox("Second version", names, index=1 if names.index(default) == 0 else 0,
                             key="compare_second")
    if first == second:
        st.info("Pick two different versions.")
        return
    pair = [next(v for v in versions if v["name"] == name) for name in (first, second)]
    _side_by_side(pair, "compare")
    if any(is_regression(v["card"]) for v in pair):
        st.caption("Note-by-note comparison is for classification versions.")
        return
    folders = (pair[0]["folder"], pair[1]["folder"])
    if st.button(f"Score both on the test notes of {plain(first)}", key="compare_run"):
        st.session_state["compare_pair"] = folders
    if st.session_state.get("compare_pair") != folders:
        st.caption(f"Scoring loads both models and takes a while on a CPU (at most {MAX_NOTES} notes); "
                   "the result is kept for this pair.")
        return
    try:
        with st.spinner(f"Scoring the test notes of {plain(first)} with both versions ..."):
            result = get_comparison(*folders, user)
    except HealthmonError as exc:
        show_error(exc)
        return
    for line in comparison_words(result):
        st.markdown(plain(line))
    if not result.disagreements:
        st.success("The two versions predict the same labels on every note scored.")
        return
    st.dataframe(disagreement_table(result), hide_index=True, column_config={
        "note": st.column_config.TextColumn("note", width="large"),
        f"{first}: probability": st.column_config.NumberColumn(format="%.2f"),
        f"{second}: probability": st.column_config.NumberColumn(format="%.2f")})
    st.caption("Probability: each version's calibrated probability of its most likely label. A label a version "
               "does not know counts as an error.")
