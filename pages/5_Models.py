"""Models: versions with their evaluation (before / after fine-tuning, the search, calibration), two versions
side by side, training in the background, promotion and rollback."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from healthmon.errors import HealthmonError
from healthmon.figures import confusion_figure, reliability_figure, training_curves
from healthmon.services.retrain import submit_finetune, submit_retrain
from healthmon.services.versions import list_versions, set_active
from healthmon.ui.components import jobs_panel, plain, show_error
from healthmon.ui.models import before_after_section, compare_section, is_regression, regression_section, search_section
from healthmon.ui.resources import active_model_dir, get_database, get_settings, register_served
from healthmon.ui.session import page_setup

user = page_setup("Models")
settings = get_settings()
factory = get_database()
served = active_model_dir(settings)
if served is not None:
    register_served(served)
versions = [{"name": v.name, "status": v.status, "folder": v.folder, "card": v.card, "metrics": v.metrics,
             "reason": v.status_reason, "created": v.created_at} for v in list_versions(factory)]
if not versions:
    st.info("No model versions yet: run `python -m healthmon demo`, or train one below (admins).")
else:
    any_regression = any(is_regression(v["card"]) for v in versions)

    def _row(v: dict) -> dict:
        test = (v["metrics"] or {}).get("test", {})
        row = {"version": v["name"], "status": v["status"], "test macro-F1": test.get("macro_f1"),
               "test accuracy": test.get("accuracy"), "calibration error (ECE)": test.get("ece")}
        if any_regression:  # regression versions are scored by their error instead
            row["test MAE"] = test.get("mae")
        return row | {"labels": ", ".join(v["card"].get("labels", [])), "note": v["reason"]}

    st.dataframe(pd.DataFrame([_row(v) for v in versions]), hide_index=True, width="stretch")
    names = [v["name"] for v in versions]
    active = next((v["name"] for v in versions if v["status"] == "active"), names[0])
    name = st.selectbox("Version", names, index=names.index(active), key="model_version")
    chosen = next(v for v in versions if v["name"] == name)
    metrics, card = chosen["metrics"] or {}, chosen["card"] or {}
    labels = list(card.get("labels", []))
    split = st.radio("Evaluated on", ["test", "validation"], horizontal=True, key="model_split")
    evaluation = metrics.get(split, {})
    if "retrain" in metrics:
        r = metrics["retrain"]
        st.caption(plain(f"Retrain check: regression set {r['regression_active']:.3f} → {r['regression_candidate']:.3f} "
                         f"(margin {r['margin']}); held-out reviewed cases {r['reviewed_active']:.3f} → "
                         f"{r['reviewed_candidate']:.3f}."))
    if is_regression(card):  # a number per note: its errors, predicted against observed
        regression_section(evaluation, card, key="model")
    else:
        cols = st.columns(4)
        cols[0].metric("Macro-F1", f"{evaluation.get('macro_f1', float('nan')):.3f}")
        multi = card.get("problem_type") == "multi_label_classification"
        # Multi-label accuracy counts a note right only when every label is right: say so.
        cols[1].metric("Exact-match accuracy" if multi else "Accuracy", f"{evaluation.get('accuracy', float('nan')):.3f}")
        cols[2].metric("AUROC (macro)", f"{evaluation.get('auroc_macro') or float('nan'):.3f}")
        cols[3].metric("Calibration error (ECE)", f"{evaluation.get('ece', float('nan')):.3f}")
        tabs = st.tabs(["Per label", "Confusion", "Calibration", "Training curves"])
        with tabs[0]:
            per_class = evaluation.get("per_class") or {}
            st.dataframe(pd.DataFrame([{"label": k, **v} for k, v in per_class.items()]), hide_index=True)
        with tabs[1]:
            fig = confusion_figure(evaluation, labels)
            if fig is not None:
                st.plotly_chart(fig, key="confusion")
            else:
                st.caption("No confusion counts in this card.")
        with tabs[2]:
            fig = reliability_figure(evaluation)
            if fig is not None:
                st.plotly_chart(fig, key="reliability")
                st.caption("Points on the dashed line mean a score of x% comes true x% of the time; bigger points hold more forecasts.")
            else:
                st.caption("No reliability bins in this card.")
        with tabs[3]:
            fig = training_curves(card.get("training_log") or [])
            if fig is not None:
                st.plotly_chart(fig, key="curves")
            else:
                st.caption("No training log in this card.")
    with st.expander("Before and after fine-tuning (test notes)", expanded=True):
        before_after_section(metrics, labels, key="stages")
    with st.expander("Search, stopping and calibration", expanded=True):
        search_section(metrics, key="search")

    if settings.active_model is not None and user.can("models.promote"):
        st.info(plain(f"HEALTHMON_ACTIVE_MODEL is set ({settings.active_model}): the dashboard serves that folder "
                      "whatever is promoted here. Unset it to serve the promoted version."))
    if user.can("models.promote") and chosen["status"] != "active":
        with st.form("promote"):
            verb = "Roll back to" if chosen["status"] == "retired" else "Promote"
            st.markdown(f"**{verb} {plain(name)}**: the dashboard will serve it to everyone; the current active "
                        "version is retired (and can be rolled back to).")
            sure = st.checkbox("I have checked its metrics above")
            if st.form_submit_button(f"{verb} {name}", type="primary", disabled=False):
                if not sure:
                    st.error("Tick the box to confirm.")
                else:
                    try:
                        set_active(factory, name, actor=user)
                    except HealthmonError as exc:
                        show_error(exc)
                    else:
                        st.success(f"{name} is now served.")
                        st.rerun()

    compare_section(versions, user, active)

if user.can("models.train"):
    st.subheader("Train")
    retrain_col, finetune_col = st.columns(2)
    with retrain_col.form("retrain"):
        st.markdown("**Retrain from reviewed cases** (continues from the active version, replays its training data, "
                    "promotes only if nothing regresses).")
        epochs = st.number_input("Epochs (0 = automatic)", 0.0, 50.0, 0.0, 1.0, key="retrain_epochs")
        margin = st.number_input("Largest regression-set accuracy drop allowed", 0.0, 0.2, 0.01, 0.005, format="%.3f")
        if st.form_submit_button("Start retraining", type="primary"):
            try:
                job = submit_retrain(factory, user, {"epochs": epochs or None}, margin=margin)
            except HealthmonError as exc:
                show_error(exc)
            else:
                st.success(f"Retraining queued as job #{job}.")
    with finetune_col.form("finetune"):
        st.markdown("**Fine-tune a new version from a labelled file** (a candidate: served only once promoted).")
        data = st.file_uploader("Labelled notes (.csv with a text and a label column)", type=["csv", "tsv"])
        mode = st.selectbox("Method", ["lora", "full", "head"], help="LoRA adapters (default), all weights, or the head only")
        task = st.radio("Predict", ["classification", "regression"], horizontal=True,
                        format_func={"classification": "labels", "regression": "a number (regression)"}.get,
                        help="regression: the label column holds a number per note, e.g. a 0-10 severity")
        multi = st.checkbox("Several labels per note (labels separated by |)")
        ft_epochs = st.number_input("Epochs (0 = automatic: until validation stops improving)", 0.0, 50.0, 0.0, 1.0,
                                    key="finetune_epochs")
        budget_min = st.number_input("Time budget, minutes (search and fine-tune)", 1, 24 * 60, 40, 5)
        if st.form_submit_button("Start fine-tuning", type="primary"):
            if data is None:
                st.error("Choose a labelled CSV first.")
            else:
                try:
                    knobs = {"mode": mode, "multi_label": multi, "epochs": ft_epochs or None, "task": task,
                             "time_budget_s": float(budget_min * 60)}
                    job = submit_finetune(factory, user, settings, data.getvalue(), data.name, knobs)
                except HealthmonError as exc:
                    show_error(exc)
                else:
                    st.success(f"Fine-tuning queued as job #{job}.")

jobs_panel(("retrain", "finetune"), title="Training jobs (all users)")
