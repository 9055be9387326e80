"""Notes: upload or paste notes, score them with the served model, see rejected rows."""

from __future__ import annotations

import streamlit as st

from healthmon.errors import HealthmonError
from healthmon.ingest.notes import read_notes_bytes, read_pasted
from healthmon.ui.components import show_error, SYNTHETIC_BANNER, ingest_report, predictions_table
from healthmon.ui.resources import active_model_dir, get_card, get_classifier, get_settings, store_predictions

st.set_page_config(page_title="Notes · healthmon", layout="wide")
st.title("Notes")

settings = get_settings()
version = active_model_dir(settings)
if version is None:
    st.info("No model available: run `python -m healthmon demo` first.")
    st.stop()
card = get_card(str(version))
if card.synthetic_data:
    st.warning(SYNTHETIC_BANNER, icon="⚠️")

upload = st.file_uploader("Upload notes (.csv, .tsv or .txt)", type=["csv", "tsv", "txt"])
pasted = st.text_area("... or paste one note", height=120)
if st.button("Predict", type="primary"):
    try:
        if upload is not None:
            result = read_notes_bytes(upload.getvalue(), upload.name, max_bytes=int(settings.max_upload_mb * 2**20))
        else:
            result = read_pasted(pasted)
        ingest_report(result.report)
        texts = [note.text for note in result.notes]
        with st.spinner(f"Scoring {len(texts)} note(s) ..."):
            predictions = get_classifier(str(version)).predict(texts)
    except HealthmonError as exc:
        show_error(exc)
    else:
        # Every scored note becomes a case annotators can review (Review page).
        saved = store_predictions(version, list(result.notes), predictions)
        st.caption(f"Saved {saved} case(s) for review.")
        table = predictions_table([n.note_id for n in result.notes], texts, predictions)
        columns = {c: st.column_config.ProgressColumn(c, min_value=0.0, max_value=1.0, format="percent")
                   for c in table.columns if c.startswith("P(")}
        st.dataframe(table, column_config=columns, hide_index=True)
        st.download_button("Download CSV", table.to_csv(index=False), file_name="healthmon-predictions.csv")
