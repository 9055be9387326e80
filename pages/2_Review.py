"""Review: annotators work through the queue, optionally blind-first, and store labels."""

from __future__ import annotations

import streamlit as st

from healthmon.errors import HealthmonError
from healthmon.storage.db import transaction
from healthmon.storage.models import ROLES
from healthmon.storage.repository import (
    ReviewConflict,
    create_user,
    get_user,
    label_history,
    list_users,
    review_queue,
    submit_review,
)
from healthmon.ui.components import explanation_panel, plain, probability_chart, show_error
from healthmon.ui.resources import active_model_dir, get_card, get_classifier, get_database, get_settings

st.set_page_config(page_title="Review · healthmon", layout="wide")
st.title("Review")
st.caption("Cases where reviewers disagree come first, then the ones the model is least sure about.")

factory = get_database()
with transaction(factory) as session:
    names = list_users(session)
with st.expander("Add a reviewer", expanded=not names):
    with st.form("new_reviewer"):
        new_name = st.text_input("Name")
        new_role = st.selectbox("Role", ROLES, index=1)
        if st.form_submit_button("Add"):
            try:
                with transaction(factory) as session:
                    create_user(session, new_name.strip(), new_role)
                st.rerun()
            except HealthmonError as exc:
                show_error(exc)
if not names:
    st.stop()

reviewer_name = st.selectbox("Reviewing as", names, key="reviewer")
blind = st.toggle("Blind-first: label before seeing the model's output", value=True, key="blind")
version = active_model_dir(get_settings())
classifier = get_classifier(str(version)) if version is not None else None
labels = list(get_card(str(version)).labels) if version is not None else []

with transaction(factory) as session:
    queue = review_queue(session, limit=20, reviewer=get_user(session, reviewer_name))
if not queue:
    st.success("Nothing waiting for you. Scored notes appear here (Notes page).")
    st.stop()

choice = st.selectbox(
    "Case", range(len(queue)), key="case",
    format_func=lambda i: (f"#{queue[i].note_id} · {'disagreement · ' if queue[i].disagreement else ''}"
                           f"uncertainty {queue[i].uncertainty:.2f} · {queue[i].text[:60]}"),
)
item = queue[choice]
st.caption("Note")
st.container(border=True).text(item.text)  # st.text: shown as plain text, never markup

state_key = f"blind-{item.note_id}-{item.review_version}"
committed = st.session_state.get(state_key)
if blind and committed is None:
    first = st.multiselect("Your label(s), before seeing the model", labels, key=f"first-{item.note_id}")
    if st.button("Commit and reveal the model's output", type="primary", disabled=not first):
        st.session_state[state_key] = first
        st.rerun()
    st.stop()

if classifier is not None:
    prediction = classifier.predict(item.text)
    st.markdown(f"**Model:** {plain(', '.join(prediction.labels) or 'no label above threshold')}")
    st.plotly_chart(probability_chart(prediction, get_card(str(version)).thresholds))
    explanation_panel(classifier, item.text, prediction)
default = committed if committed is not None else list(item.predicted)
final = st.multiselect("Final label(s)", labels, default=[d for d in default if d in labels], key=f"final-{item.note_id}")
comment = st.text_input("Comment (optional)", key=f"comment-{item.note_id}")
if st.button("Submit review", type="primary", disabled=not final):
    try:
        with transaction(factory) as session:
            review = submit_review(
                session, item.note_id, get_user(session, reviewer_name), final, seen_version=item.review_version,
                saw_model_output=not blind, blind_labels=committed if blind else None, comment=comment,
            )
        changed = " (changed after the reveal)" if review.changed_after_reveal else ""
        st.success(f"Saved: {', '.join(final)}{changed}.")
        st.session_state.pop(state_key, None)
    except ReviewConflict as exc:
        st.warning(plain(f"Someone else reviewed this case meanwhile: now {', '.join(exc.current_labels)}. "
                         "Reload and decide again."))
    except HealthmonError as exc:
        show_error(exc)

with transaction(factory) as session:
    history = label_history(session, item.note_id)
if history:
    st.caption("Label history")
    st.dataframe(history, hide_index=True)
