"""Notes: upload or paste notes, score them in the background, filter the results, open a case."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from healthmon.errors import HealthmonError
from healthmon.ingest.notes import read_notes_bytes, read_pasted
from healthmon.services.cases import predictions_table_rows
from healthmon.services.jobs import ExplainJob, enqueue, get_job
from healthmon.services.notes import submit_for_scoring
from healthmon.ui.components import SYNTHETIC_BANNER, ingest_report, job_status, jobs_panel, plain, show_error
from healthmon.ui.resources import active_model_dir, get_card, get_database, get_settings
from healthmon.ui.session import open_case, page_setup, recheck

user = page_setup("Notes")
settings = get_settings()
factory = get_database()
version = active_model_dir(settings)
if version is None:
    st.info("No model available: run `python -m healthmon demo` first.")
    st.stop()
card = get_card(str(version))
if card.synthetic_data:
    st.warning(SYNTHETIC_BANNER, icon="⚠️")

with st.form("notes_input", border=True):
    upload = st.file_uploader("Upload notes (.csv, .tsv or .txt)", type=["csv", "tsv", "txt"])
    pasted = st.text_area("... or paste one note", height=120)
    submitted = st.form_submit_button("Predict", type="primary")
if submitted:
    try:
        if upload is not None:
            result = read_notes_bytes(upload.getvalue(), upload.name, max_bytes=int(settings.max_upload_mb * 2**20))
        else:
            result = read_pasted(pasted)
        job_id = submit_for_scoring(factory, user, result.notes, version)
    except HealthmonError as exc:
        show_error(exc)
    else:
        # Kept in the session: the report and the job survive reruns and page changes.
        st.session_state["notes_job"] = job_id
        st.session_state["notes_report"] = result.report

report = st.session_state.get("notes_report")
job_id = st.session_state.get("notes_job")
if report is not None:
    ingest_report(report)


@st.fragment(run_every=0.3)
def _wait(job_id: int) -> None:
    fresh = recheck("notes.predict")  # a poll runs without the page's checks: the session may have ended since
    job = get_job(factory, job_id)
    job_status(job, fresh)
    if job.finished:
        st.rerun()  # the whole page, to show the results below


if job_id is not None:
    job = get_job(factory, job_id)
    if not job.finished:
        _wait(job_id)
        st.stop()
    if job.status != "succeeded":
        job_status(job, user)
        st.stop()
    rows = predictions_table_rows(factory, job.result["note_ids"])
    table = pd.DataFrame(rows)
    st.caption(f"Batch #{job.id}: {len(table)} case(s) scored by {job.result['version']} and saved for review. "
               "Click a column header to sort; select a row to open its case.")
    probability_columns = [c for c in table.columns if c.startswith("P(")]
    labels = [c[2:-1] for c in probability_columns]
    if "value" in table.columns:
        # A regression version: one predicted value per note (its target named in "predicted"), no risks.
        target = str(table["predicted"].iloc[0])
        value_column = f"predicted {target}"
        table = table[["case", "note", "value", "excerpt"]].rename(columns={"value": value_column})
        filters = st.columns([2, 3])
        floor = filters[0].number_input(plain(f"Predicted {target} at least"), value=None, key="filter_value_floor")
        search = filters[1].text_input("Text contains", key="filter_text")
        shown = table if floor is None else table[table[value_column] >= floor]
        columns = {value_column: st.column_config.NumberColumn(value_column, format="%.3g", width="small")}
    else:
        # Risks before the excerpt, so they are on screen without scrolling sideways.
        table = table[["case", "note", "predicted", *probability_columns, "excerpt"]]
        filters = st.columns([2, 2, 1, 2])
        wanted = filters[0].multiselect("Predicted label includes", labels, key="filter_labels")
        conditions = [label for label in labels if label != "none"] or labels
        by_label = filters[1].selectbox("Risk of", labels, index=labels.index(conditions[0]),
                                        key="filter_risk_label") if labels else None
        floor = filters[2].number_input("at least", 0.0, 1.0, 0.0, 0.05, format="%.2f", key="filter_floor")
        search = filters[3].text_input("Text contains", key="filter_text")
        shown = table
        if wanted:
            shown = shown[shown["predicted"].apply(lambda p: any(label in p.split(", ") for label in wanted))]
        if by_label and floor > 0:
            shown = shown[shown[f"P({by_label})"] >= floor]
        columns = {c: st.column_config.ProgressColumn(c, min_value=0.0, max_value=1.0, format="percent", width="small")
                   for c in probability_columns}
    if search.strip():
        shown = shown[shown["excerpt"].str.contains(search.strip(), case=False, regex=False)
                      | shown["note"].astype(str).str.contains(search.strip(), case=False, regex=False)]
    columns["excerpt"] = st.column_config.TextColumn("excerpt", width="large")
    # st.dataframe shows cell text as text (never HTML), so hostile notes stay inert here.
    event = st.dataframe(shown, column_config=columns, hide_index=True, on_select="rerun",
                         selection_mode="single-row", key="notes_table", width="stretch")
    st.caption(f"Showing {len(shown)} of {len(table)}.")
    # A selection can outlive a filter change: keep only rows still shown.
    selected = [r for r in (event.selection.rows if event is not None else []) if r < len(shown)]
    left, right = st.columns(2)
    if left.button("Open selected case", disabled=not selected, type="primary"):
        open_case(int(shown.iloc[selected[0]]["case"]))
    left.download_button("Download table (CSV)", shown.to_csv(index=False), file_name="healthmon-predictions.csv")
    if user.can("explain.batch") and right.button("Explain all of them in the background"):
        try:
            enqueue(factory, ExplainJob(tuple(int(i) for i in table["case"])), user)
        except HealthmonError as exc:
            show_error(exc)
        else:
            st.toast("Explanations queued: cases open instantly once they are done.")

jobs_panel(("predict", "explain"), title="Recent batches (all users)")
