"""Vitals: upload device CSVs. Scoring (NEWS2, blood-pressure stage, trends, alerts) comes later."""

from __future__ import annotations

import io

import pandas as pd
import streamlit as st

from healthmon.ui.components import plain
from healthmon.ui.session import page_setup

page_setup("Vitals")
st.info("Vitals scoring is not part of this release yet. You can upload a device CSV to check that it reads; "
        "nothing is stored or scored.", icon=":material/info:")
upload = st.file_uploader("Device CSV (a timestamp plus vitals columns)", type=["csv"])
if upload is not None:
    try:
        frame = pd.read_csv(io.BytesIO(upload.getvalue()), nrows=10_000)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        st.error(plain(f"Expected a comma-separated file with a header row; could not read {upload.name}: {exc}. "
                       "Export the device data as CSV and try again."), icon="🚫")
    else:
        st.caption(plain(f"Read {len(frame)} row(s) and {len(frame.columns)} column(s) from {upload.name}: "
                         f"{', '.join(map(str, frame.columns))}."))
        st.dataframe(frame.head(50), hide_index=True)
