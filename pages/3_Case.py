"""Case: one note with its stored scores, the words behind each score, and its label history."""

from __future__ import annotations

import streamlit as st

from healthmon.errors import HealthmonError
from healthmon.figures import probability_chart
from healthmon.services.cases import case_detail, recent_cases
from healthmon.services.links import link_ref, resolve_ref
from healthmon.ui.components import (
    explanation_panel,
    history_table,
    plain,
    predicted_value,
    show_error,
    stored_prediction,
)
from healthmon.ui.resources import get_classifier, get_database
from healthmon.ui.session import PAGES, page_setup, patient_link_params

user = page_setup("Case")
factory = get_database()

# The case comes from the Notes table or the Review page, or from the address (?case=REF) so a
# case can be reloaded, bookmarked and shared. REF is an opaque id: the address never carries the
# case's row number or anything about the patient.
linked = st.query_params.get("case", "")
if linked and st.session_state.get("case_from_link") != linked:
    target = resolve_ref(factory, "case", linked)
    if target is None:
        st.warning("That case link is not known here (it may come from another installation).")
    else:
        st.session_state["case_id"] = int(target)  # a link someone opened wins over the last case viewed
    st.session_state["case_from_link"] = linked
search = st.text_input("Find a case (words in the note or its id)", key="case_search")
choices = recent_cases(factory, limit=200, search=search)
current = st.session_state.get("case_id")
ids = [c["case"] for c in choices]
if current is not None and current not in ids:
    ids.insert(0, current)
if not ids:
    st.info("No scored cases yet: score notes on the Notes page first.")
    st.stop()
labels_by_id = {c["case"]: f"#{c['case']} · {c['note']} · {c['predicted']} · {c['excerpt']}" for c in choices}
note_id = st.selectbox("Case", ids, index=ids.index(current) if current in ids else 0,
                       format_func=lambda i: labels_by_id.get(i, f"#{i}"))
st.session_state["case_id"] = note_id
case_ref = link_ref(factory, "case", note_id)
st.query_params["case"] = case_ref
st.session_state["case_from_link"] = case_ref

try:
    case = case_detail(factory, note_id)
except HealthmonError as exc:
    show_error(exc)
    st.stop()

facts = [f"Case #{case.note_id}", f"note {case.external_id or '-'}", f"patient {case.patient or 'unknown'}",
         f"from {case.source}"]
if case.version:
    facts.append(f"scored by {case.version} on {case.scored_at:%Y-%m-%d %H:%M} UTC")
st.caption(plain(" · ".join(facts)))
if case.final_labels is not None:
    st.markdown(f"**Reviewed label(s):** {plain(', '.join(case.final_labels) or '(none)')}")

if not case.probabilities:
    st.info("This note has no score yet.")
    st.container(border=True).text(case.text)
elif case.regression:  # a value, not probabilities
    predicted_value(case)
    explanation_panel(case, get_classifier, key=f"case-{case.note_id}")
else:
    prediction = stored_prediction(case)
    found = ", ".join(case.predicted) or "no label above its threshold"
    st.markdown(f"**Predicted:** {plain(found)}")
    st.plotly_chart(probability_chart(prediction, case.thresholds))
    st.caption("Calibrated probabilities: of notes scored 70%, about 70% carry the label. "
               "Red bars are predicted labels" + (", at or above their threshold (dotted)." if case.thresholds else "."))
    explanation_panel(case, get_classifier, key=f"case-{case.note_id}")

st.subheader("Label history")
if case.history:
    history_table(case.history)
else:
    st.caption("Nobody has reviewed this case yet.")
if user.can("cases.review"):
    st.page_link(PAGES["Review"].path, label="Review cases", icon=PAGES["Review"].icon)
if case.patient and user.can("advice.decide"):
    st.page_link(PAGES["Patient"].path, label=f"Advice and case report for patient {plain(case.patient)}",
                 icon=PAGES["Patient"].icon, query_params=patient_link_params(case.patient))
