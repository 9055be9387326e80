"""Vitals: upload a device CSV, see what was read, NEWS2 with its working, and the trends."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from healthmon.errors import HealthmonError
from healthmon.figures import vitals_figure
from healthmon.ui.components import plain, show_error
from healthmon.ui.session import page_setup
from healthmon.vitals.ingest import read_vitals_csv
from healthmon.vitals.news2 import RESPONSES
from healthmon.vitals.series import news2_over_time

page_setup("Vitals")
st.caption("A time column plus any of heart rate, blood pressure, SpO2, respiration, temperature, ACVPU, oxygen, "
           "steps, sleep, glucose, weight (names such as hr, pulse, sbp, spo2, temp_f are recognised). "
           "Readings are scored here and not stored yet.")
upload = st.file_uploader("Device CSV", type=["csv"])
options = st.columns(3)
setting = options[0].radio("Where were the readings taken?", ["hospital", "home"], horizontal=True)
scale = options[1].radio("SpO2 scale", [1, 2], horizontal=True,
                         help="Scale 2 only for patients with a prescribed 88-92% target (e.g. hypercapnic failure)")
lookback = options[2].selectbox("Look-back for each parameter", ["1h", "4h", "12h", "24h"], index=1)
if upload is None:
    st.stop()
try:
    data = read_vitals_csv(upload.getvalue(), upload.name)
    scores = news2_over_time(data.frame, lookback=lookback, spo2_scale=scale, setting=setting)
except HealthmonError as exc:
    show_error(exc)
    st.stop()
report = data.report
st.caption(plain(
    f"Read {report.rows_read} row(s) from {upload.name}: {report.values_read} value(s), "
    f"{report.values_flagged} flagged as artefacts (kept, not scored), {report.rows_rejected} row(s) rejected. "
    f"Columns used: " + ", ".join(f"{k} from '{v}'" for k, v in report.columns.items()) + "."
))
for note in report.conversions:
    st.info(plain(note))
if report.rejected:
    st.warning(f"{report.rows_rejected} row(s) rejected:")
    st.dataframe(pd.DataFrame(report.rejected, columns=["line", "reason"]), hide_index=True)
if report.flagged:
    with st.expander(f"{report.values_flagged} value(s) flagged as artefacts"):
        st.dataframe(pd.DataFrame(report.flagged, columns=["line", "parameter", "why"]), hide_index=True)

patients = sorted(data.frame["patient_id"].unique())
patient = st.selectbox("Patient", patients) if len(patients) > 1 else patients[0]
mine = scores[scores["patient_id"] == patient]
if len(mine):
    latest = mine.iloc[-1]
    cols = st.columns(3)
    cols[0].metric("Latest NEWS2", int(latest["total"]), help="Royal College of Physicians, 2017")
    cols[1].metric("Clinical risk", latest["band"])
    band_key = "low (0)" if latest["band"] == "low" and latest["total"] == 0 else latest["band"]
    cols[2].metric("At", f"{latest['time']:%Y-%m-%d %H:%M}")
    st.markdown(f"**Monitoring:** {RESPONSES[band_key][1]}. **Response (NEWS2 chart):** {RESPONSES[band_key][0]}")
    if latest["caveat"]:
        st.warning(plain(latest["caveat"]))
    points = {k.removeprefix("points_").replace("_", " "): v for k, v in latest.items() if k.startswith("points_")}
    st.table(pd.DataFrame([{"parameter": k, "points": "not measured" if pd.isna(v) else int(v)}
                           for k, v in points.items()]).set_index("parameter"))
figure = vitals_figure(data.frame[data.frame["patient_id"] == patient], mine)
if figure is not None:
    st.plotly_chart(figure)
    st.caption("Green bands: the NEWS2 zero-point range. Red crosses: artefacts, shown but never scored.")
