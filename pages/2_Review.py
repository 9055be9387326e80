"""Review: work through the queue (optionally blind-first); admins see agreement, adjudicate and export
the reviewed labels."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from healthmon.errors import HealthmonError, ReviewConflict
from healthmon.figures import probability_chart
from healthmon.services.cases import adjudicate_case, agreement_summary, case_detail, queue_for, review_case
from healthmon.services.labels import labels_download
from healthmon.ui.components import (
    explanation_panel,
    history_table,
    plain,
    predicted_value,
    show_error,
    stored_prediction,
)
from healthmon.ui.resources import active_model_dir, get_card, get_classifier, get_database, get_settings
from healthmon.ui.session import page_setup

user = page_setup("Review")
factory = get_database()
version = active_model_dir(get_settings())
card = get_card(str(version)) if version is not None else None
labels = list(card.labels) if card is not None else []
multi_label = bool(card and card.multi_label)


def label_picker(prompt: str, default: list[str], key: str) -> list[str]:
    """Multi-label: type to filter, Enter to pick. Single-label: arrow keys move the choice."""
    # Option text renders as markdown: labels come from uploaded training files, so escape them.
    if multi_label:
        return st.multiselect(prompt, labels, default=[d for d in default if d in labels], key=key, format_func=plain)
    index = labels.index(default[0]) if default and default[0] in labels else None
    picked = st.radio(prompt, labels, index=index, key=key, horizontal=True, format_func=plain)
    return [picked] if picked else []


def conflict_message(exc: ReviewConflict) -> None:
    st.warning(plain(f"Someone else reviewed this case while you were deciding: it is now labelled "
                     f"{', '.join(exc.current_labels) or '(none)'}. Your label was not saved. "
                     "Look at their label below, then decide again."), icon="⚠️")


def review_tab() -> None:
    st.caption("Cases where reviewers disagree come first, then the ones the model is least sure about. "
               "Keyboard: Tab moves between fields, Enter in the comment box submits.")
    blind = st.toggle("Blind-first: label before seeing the model's output", value=True, key="blind")
    queue = queue_for(factory, user, limit=20)
    if not queue:
        st.success("Nothing waiting for you. Scored notes appear here (Notes page).")
        return
    # Chosen by case id, not position: the queue reorders as others review, and the case on
    # screen must stay the one being labelled.
    by_id = {q.note_id: q for q in queue}
    current = st.session_state.get("review_case")
    ids = list(by_id)
    if current is not None and current not in by_id:
        st.session_state.pop("review_case", None)
    note_id = st.selectbox(
        "Case", ids, key="review_case",
        format_func=lambda i: (f"#{i} · {'disagreement · ' if by_id[i].disagreement else ''}"
                               f"uncertainty {by_id[i].uncertainty:.2f} · {' '.join(by_id[i].text.split())[:60]}"),
    )
    item = by_id[note_id]
    # The version this reviewer first saw: if someone else reviews the case meanwhile, the
    # submit below is refused instead of silently deciding on an outdated view.
    seen_key = f"seen-{item.note_id}"
    seen_version = st.session_state.setdefault(seen_key, item.review_version)
    st.caption("Note")
    st.container(border=True).text(item.text)  # st.text: plain text, never markup

    # Not keyed by the case's version: a review by someone else must not erase the label
    # this reviewer committed blind (they have seen the model since).
    state_key = f"blind-{item.note_id}"
    committed = st.session_state.get(state_key)
    if blind and committed is None:
        with st.form(f"blind-form-{item.note_id}"):
            first = label_picker("Your label(s), before seeing the model", [], key=f"first-{item.note_id}")
            if st.form_submit_button("Commit and reveal the model's output", type="primary"):
                if first:
                    st.session_state[state_key] = first
                    st.rerun()
                st.error("Pick at least one label to commit.")
        return

    case = case_detail(factory, item.note_id)
    if case.probabilities:
        if case.regression:  # one predicted value, no class probabilities to chart
            predicted_value(case)
        else:
            st.markdown(f"**Model:** {plain(', '.join(case.predicted) or 'no label above threshold')}")
            st.plotly_chart(probability_chart(stored_prediction(case), case.thresholds), key=f"chart-{item.note_id}")
        # A toggle, not an expander: an expander's body runs even when closed, and the
        # explanation is computed only when asked for.
        if st.toggle("Why this score? (highlighted words)", key=f"why-{item.note_id}"):
            explanation_panel(case, get_classifier, key=f"review-{item.note_id}")
    default = committed if committed is not None else list(item.predicted)
    with st.form(f"review-form-{item.note_id}"):
        final = label_picker("Final label(s)", default, key=f"final-{item.note_id}")
        comment = st.text_input("Comment (optional)", key=f"comment-{item.note_id}")
        accept = st.form_submit_button("Submit review", type="primary")
    if accept:
        if not final:
            st.error("Pick at least one label (use 'none' when no condition applies, if the model has that label).")
        else:
            try:
                review = review_case(factory, user, item.note_id, final, seen_version=seen_version,
                                     saw_model_output=not blind, blind_labels=committed if blind else None,
                                     comment=comment)
            except ReviewConflict as exc:
                conflict_message(exc)
                st.session_state.pop(seen_key, None)  # the next submit decides on the current version
            except HealthmonError as exc:
                show_error(exc)
            else:
                st.session_state.pop(seen_key, None)
                changed = " (changed after the reveal)" if review.changed_after_reveal else ""
                st.success(plain(f"Saved: {', '.join(final)}{changed}. The next case is ready when you move on."))
                st.session_state.pop(state_key, None)
    # Read again only after a submit: the page shows the label it just stored.
    history = case_detail(factory, item.note_id).history if accept else case.history
    if history:
        st.caption("Label history")
        history_table(history)


def agreement_tab() -> None:
    summary = agreement_summary(factory, user, labels)
    metric = "Cohen's kappa" if summary.metric == "cohen_kappa" else "Krippendorff's alpha"
    st.caption(f"{metric} per label over {summary.cases} case(s) labelled by two or more of {summary.reviewers} "
               "reviewer(s). 1 = perfect agreement, 0 = chance; below 0.6 usually means the labelling guide needs work.")
    st.dataframe(pd.DataFrame([{"label": k, metric: v} for k, v in summary.per_label.items()]), hide_index=True)
    st.metric("Cases waiting for adjudication", len(summary.disagreements))


def adjudicate_tab() -> None:
    summary = agreement_summary(factory, user, labels)
    if not summary.disagreements:
        st.success("No open disagreements.")
        return
    by_id = {d["note_id"]: d for d in summary.disagreements}
    if st.session_state.get("adj_case") not in by_id:
        st.session_state.pop("adj_case", None)
    note_id = st.selectbox("Case", list(by_id), key="adj_case", format_func=lambda i: f"#{i}")
    item = by_id[note_id]
    case = case_detail(factory, note_id)
    seen_key = f"adj-seen-{note_id}"
    seen_version = st.session_state.setdefault(seen_key, case.review_version)
    st.container(border=True).text(case.text)
    st.dataframe(pd.DataFrame([{"reviewer": r, "labels": ", ".join(v) or "(none)"} for r, v in item["labels"].items()]),
                 hide_index=True)  # st.dataframe shows cells as text
    with st.form(f"adjudicate-{case.note_id}"):
        final = label_picker("Final label(s)", list(case.predicted), key=f"adj-final-{case.note_id}")
        comment = st.text_input("Reason (kept in the history)", key=f"adj-comment-{case.note_id}")
        if st.form_submit_button("Adjudicate", type="primary"):
            try:
                adjudicate_case(factory, user, case.note_id, final, seen_version=seen_version, comment=comment)
            except ReviewConflict as exc:
                conflict_message(exc)
                st.session_state.pop(seen_key, None)
            except HealthmonError as exc:
                show_error(exc)
            else:
                st.session_state.pop(seen_key, None)
                st.success("Adjudicated: the case leaves the queue with this label.")


EXPORT_FORMATS = {"csv": "CSV (one row per case, for spreadsheets)", "jsonl": "JSON Lines (nested, one case per line)"}


def export_tab() -> None:
    st.caption("Every reviewed case with its final label(s) (adjudicated, else the latest review), each review "
               "with who and when, the adjudication, and the model version and scores the reviewers were shown. "
               "The export is recorded in the audit log. In the CSV, a cell starting with `=` `+` `-` `@` gets a "
               "leading `'` so a spreadsheet shows it as text.")
    fmt = st.radio("Format", list(EXPORT_FORMATS), format_func=EXPORT_FORMATS.get, key="labels_format")
    if st.button("Prepare the labels export", key="prepare_labels"):
        try:
            st.session_state["labels_export"] = labels_download(factory, user, fmt)
        except HealthmonError as exc:
            show_error(exc)
    prepared = st.session_state.get("labels_export")
    if prepared is not None and prepared.fmt == fmt:  # a file prepared in the other format is not offered
        st.caption(f"{prepared.rows} reviewed case(s).")
        st.download_button(f"Download labels ({fmt.upper()})", prepared.data, prepared.file_name, prepared.mime,
                           key="labels_download")


if not labels:
    st.info("No model is available yet, so there are no labels to choose from: run `python -m healthmon demo`.")
    st.stop()
if user.can("cases.adjudicate"):
    queue_tab, agree_tab, adj_tab, out_tab = st.tabs(["Queue", "Agreement", "Adjudicate", "Export"])
    with queue_tab:
        review_tab()
    with agree_tab:
        agreement_tab()
    with adj_tab:
        adjudicate_tab()
    with out_tab:
        if user.can("labels.export"):
            export_tab()
else:
    review_tab()
