"""healthmon dashboard entry page: the served model and a quick single-note check."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from healthmon.errors import HealthmonError
from healthmon.ingest.notes import read_pasted
from healthmon.ui.components import explanation_panel, model_summary, plain, probability_chart, show_error
from healthmon.ui.resources import active_model_dir, get_card, get_classifier, get_database, get_settings

LOGO = str(Path(__file__).parent / "assets" / "logo.svg")
st.set_page_config(page_title="healthmon", page_icon=LOGO, layout="wide")
st.logo(LOGO)
st.title("healthmon")
st.caption("Calibrated risk scores from clinical notes, for preventive-care review.")

settings = get_settings()
try:
    get_database()  # migrations run at start: the schema is current before any page uses it
except HealthmonError as exc:
    show_error(exc)
    st.stop()
version = active_model_dir(settings)
if version is None:
    st.info(
        "No model is available yet. Build the demo model with `python -m healthmon demo` "
        "(or `make run`), or set HEALTHMON_ACTIVE_MODEL to a version folder written by "
        "`python -m healthmon train`."
    )
    st.stop()

card = get_card(str(version))
model_summary(card, version.name)

st.subheader("Check one note")
text = st.text_area("Paste a note", height=160, placeholder="e.g. 58 y/o with T2DM, HbA1c 8.4%, BP 152/96 mmHg ...")
if st.button("Predict", type="primary"):
    try:
        st.session_state["checked_note"] = read_pasted(text).notes[0].text
    except HealthmonError as exc:
        st.session_state.pop("checked_note", None)
        show_error(exc)

# Kept in the session so choosing another label to explain does not drop the result.
checked = st.session_state.get("checked_note")
if checked is not None:
    classifier = get_classifier(str(version))
    prediction = classifier.predict(checked)
    found = ", ".join(prediction.labels) or "no label above its threshold"
    st.markdown(f"**Predicted:** {plain(found)}")
    if prediction.windows > 1:
        st.caption(f"Long note: scored over {prediction.windows} overlapping windows.")
    st.plotly_chart(probability_chart(prediction, card.thresholds))
    if card.thresholds:
        st.caption("Red bars are at or above their label's decision threshold (dotted line), tuned on validation data.")
    explanation_panel(classifier, checked, prediction)
