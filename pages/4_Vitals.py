"""Vitals: upload device files (or pick a patient's stored readings), see NEWS2 with its
working, the blood-pressure category, trend alerts naming their readings, the chart, and
the sentence the classifier reads, which can be scored and explained like a note."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pandas as pd
import streamlit as st

from healthmon.advice.snapshot import spo2_scale_basis
from healthmon.errors import HealthmonError, PatientUnknownError
from healthmon.figures import vitals_figure
from healthmon.ingest.devices import FORMATS, DeviceData, read_device_files
from healthmon.ingest.vitals_csv import DATE_ORDERS
from healthmon.services.jobs import get_job
from healthmon.services.notes import submit_for_scoring
from healthmon.services.patients import recorded_spo2_scale
from healthmon.services.vitals import load_vitals, store_vitals, stored_descriptors, stored_patients
from healthmon.types import Note
from healthmon.ui.components import crisis_estimates_warning, job_status, plain, show_error, spo2_scale_switch
from healthmon.ui.resources import active_model_dir, get_database, get_settings
from healthmon.ui.session import open_case, page_setup, recheck
from healthmon.vitals.assess import assess_patient, cuffless_rows, mark_cuffless, readings_setting
from healthmon.vitals.news2 import RESPONSES
from healthmon.vitals.text import summaries_in_training_data

user = page_setup("Vitals")
settings = get_settings()
factory = get_database()
st.caption("Accepted: " + "; ".join(FORMATS.values()) + ". A generic CSV needs a time column plus any of heart rate, "
           "blood pressure, SpO2, respiration, temperature, ACVPU, oxygen, steps, sleep, glucose, weight "
           "(names such as hr, pulse, sbp, spo2, temp_f are recognised).")

stored = stored_patients(factory)
source = st.radio("Readings", ["Upload files", "Stored readings"], horizontal=True,
                  index=0, disabled=not stored, help=None if stored else "No readings stored yet")


@st.cache_data(max_entries=8, show_spinner="Reading the files ...")
def _read(files: tuple[tuple[str, bytes], ...], patient_id: str | None, date_order: str) -> DeviceData:
    return read_device_files(list(files), patient_id=patient_id, date_order=date_order)


data: DeviceData | None = None
if source == "Upload files":
    uploads = st.file_uploader("Device files", type=["csv", "txt", "json", "ndjson"], accept_multiple_files=True)
    if not uploads:
        st.stop()
    contents = tuple((u.name, u.getvalue()) for u in uploads)
    # Choices about one upload (its date order, its setting) belong to that upload: the next
    # file must not inherit them.
    upload_key = hashlib.sha256(repr([(n, hashlib.sha256(d).hexdigest()) for n, d in contents]).encode()).hexdigest()[:16]
    date_order_key = f"vitals_date_order:{upload_key}"
    # The typed patient id too: a second file dragged in (another person's export without a
    # patient column) must be asked for its own id, not filed under the first one's.
    patient_id_key = f"vitals_patient_id:{upload_key}"
    given = st.session_state.get(patient_id_key, "").strip() or None

    def patient_id_box() -> None:
        st.text_input("Patient id for the readings without a patient column" + (
                          f" (in all {len(contents)} files: upload another person's files separately)"
                          if len(contents) > 1 else ""), key=patient_id_key,
                      help="Needed before storing: without it two people's files of the same name would merge.")

    try:
        data = _read(contents, given, st.session_state.get(date_order_key))
    except PatientUnknownError as exc:  # whose readings these are decides how they are read
        show_error(exc)
        patient_id_box()
        st.stop()
    except HealthmonError as exc:
        show_error(exc)
        st.stop()
    if data.needs_patient_id or given:
        patient_id_box()
    order_unknown = False
    if data.ambiguous_dates:
        # Offered only where the file cannot tell: 03/04/2026 is 3 April in the UK, 4 March in the US.
        # Nothing is stored until someone says which: a stored date is part of the reading.
        order_unknown = st.radio("Dates such as 03/04/2026 in this file are", DATE_ORDERS, index=None, horizontal=True,
                                 key=date_order_key, help="Nothing in the file shows the order (no day over 12). "
                                 "Check one reading you know. Shown as day/month until you choose.") is None
    if order_unknown:
        st.warning("Dates in these files fit both day/month and month/day: everything below reads them as "
                   "day/month until you choose above, and nothing can be stored before.")
    has_bp = data.frame["parameter"].isin(["systolic_bp", "diastolic_bp"]).any()
    upload_cuffless = has_bp and st.checkbox(
        "Blood pressure in these files is from a cuffless wearable", key=f"vitals_cuffless:{upload_key}",
        help="Cuffless estimates are not validated for diagnosis: shown as a trend, never scored or staged, and "
             "stored as such. Readings stored before keep the kind they were stored with.")
    if upload_cuffless:  # on each reading, so the estimates stay trend-only once stored and read back
        data = replace(data, frame=mark_cuffless(data.frame))
    for line in data.summary:
        st.caption(plain(line))
    if data.rejected:
        st.warning(f"{len(data.rejected)} row(s) or resource(s) rejected and not read:")
        st.dataframe(pd.DataFrame(data.rejected, columns=["where", "why"]), hide_index=True)
    if data.flagged:
        with st.expander(f"{len(data.flagged)} value(s) flagged as artefacts (kept, never scored)"):
            st.dataframe(pd.DataFrame(data.flagged, columns=["where", "parameter", "why"]), hide_index=True)
    if user.can("vitals.upload") and len(data.frame) and not data.needs_patient_id:
        if st.button(f"Store these {len(data.frame)} readings", disabled=order_unknown,
                     help="Choose the date order above first" if order_unknown else "Each reading is stored once; "
                     "artefacts are stored flagged. Uploading the same file again stores nothing twice."):
            try:
                result = store_vitals(factory, user, data.frame, source=", ".join(n for n, _ in contents),
                                      fmt=data.fmt, report=data.report)
            except HealthmonError as exc:
                show_error(exc)
            else:
                st.success(f"Stored {result.stored} new reading(s) for {len(result.patients)} patient(s); "
                           f"{result.duplicates} were already stored."
                           + (f" {result.repeated} repeated within the files, stored once." if result.repeated else "")
                           + (" Readings already stored keep the kind they were stored with (cuff or cuffless)."
                              if result.duplicates and upload_cuffless else "")
                           + (f" {result.unreadable} unreadable value(s) have no number to store; they stay listed "
                              "in the upload's report." if result.unreadable else ""))
    if data.notes is not None and data.notes.notes:
        st.info(f"{len(data.notes.notes)} note(s) came with this file (FHIR DocumentReference).")
        if user.can("notes.predict") and st.button("Score these notes on the Notes page"):
            version = active_model_dir(settings)
            st.session_state["notes_job"] = submit_for_scoring(factory, user, data.notes.notes, version)
            st.session_state["notes_report"] = data.notes.report
            st.switch_page("pages/1_Notes.py")
    if len(data.conditions):
        with st.expander(f"{len(data.conditions)} condition(s) on record (FHIR Condition)"):
            st.dataframe(data.conditions, hide_index=True)
    if data.frame.empty:
        st.info("No vital-sign readings in these files.")
        st.stop()
    counts = data.frame["patient_id"].value_counts()
    patients = list(counts.index)  # most readings first
else:
    patients = [p.patient_id for p in stored]

options = st.columns(4)
patient = options[0].selectbox("Patient", patients)
vitals = data.frame if data is not None else load_vitals(factory, patient)
# Readings without consciousness or air/oxygen (a wearable's heart rate, SpO2 and breathing rate,
# a home cuff, a Fitbit) default to home, so that NEWS2 comes with its "applied outside its
# setting" caveat unless the clinician says otherwise.
setting = options[1].radio("Where were the readings taken?", ["hospital", "home"], horizontal=True,
                           index=["hospital", "home"].index(readings_setting(vitals, patient)),
                           key=f"vitals_setting:{upload_key if data is not None else 'stored'}:{patient}",
                           help="Preset from the readings: hospital where consciousness or air/oxygen were charted, "
                                "else home (a wearable's breathing rate does not make it a ward)")
# Per patient, preset from the scale on record for a stored patient: a prescribed 88-92 % target
# belongs to one patient, and must not carry over to the next. It is recorded on the Patient page.
recorded = recorded_spo2_scale(factory, patient)
scale = spo2_scale_switch(options[2], key=f"vitals_spo2_scale:{patient}", recorded=recorded,
                          help="Preset from the scale recorded on the Patient page. Scale 2 only for patients with a "
                               "prescribed 88-92% target (e.g. hypercapnic failure)")
lookback = options[3].selectbox("Look-back for each parameter", ["1h", "4h", "12h", "24h"], index=1)
more = st.columns(2)
shown_rows = vitals[vitals["patient_id"].astype(str) == str(patient)]
estimates = int((cuffless_rows(shown_rows) & shown_rows["parameter"].eq("systolic_bp")).sum())  # one per reading
if estimates:
    more[0].caption(f"Blood pressure: {estimates} cuffless estimate(s), trend only: never scored or staged")
windows = {"last 24 hours": "24h", "last 7 days": "7D", "last 30 days": "30D", "everything": None}
window = more[1].selectbox("Summary for the classifier covers", list(windows), index=1,
                           help="Alerts always use the whole history their baselines need")
descriptors = data.descriptors.get(patient) if data is not None else stored_descriptors(factory, patient)


# Every click on this page reruns it. A month of minute readings takes seconds to score and draw,
# so the two are kept for the same readings and choices. Keyed by the readings' content, hashed
# here in full: Streamlit's own hash of a frame over 100,000 rows looks at a sample of them.
@st.cache_resource(max_entries=8, ttl="1h", show_spinner="Scoring the readings ...")
def _assessed(content: str, patient_id: str, setting: str, scale: int, lookback: str, descriptors_key: str,
              summary_window: str | None, _vitals: pd.DataFrame, _descriptors):  # noqa: ANN001, ANN202
    assessed = assess_patient(_vitals, patient_id, setting=setting, spo2_scale=scale, lookback=lookback,
                              descriptors=_descriptors, summary_window=summary_window)
    chart = vitals_figure(assessed.vitals, assessed.news2, assessed.alerts, spo2_scale=scale, setting=setting)
    return assessed, chart


content = hashlib.sha256(pd.util.hash_pandas_object(vitals, index=False).to_numpy().tobytes()).hexdigest()
try:
    result, figure = _assessed(content, patient, setting, scale, lookback, repr(descriptors), windows[window],
                               vitals, descriptors)
except HealthmonError as exc:
    show_error(exc)
    st.stop()

if recorded is not None or scale == 2:
    st.caption(plain(f"SpO2 scale {scale}: {spo2_scale_basis(scale, recorded)}."))
latest = result.latest_news2
cols = st.columns(4)
if latest is not None:
    cols[0].metric("Latest NEWS2", int(latest["total"]), help=f"Royal College of Physicians, 2017; SpO2 scale {scale}")
    cols[1].metric("Clinical risk", latest["band"])
    cols[2].metric("Scored at (UTC)", f"{latest['time']:%d %b %H:%M}", help=f"{latest['time']:%Y-%m-%d %H:%M} UTC")
if result.bp is not None:
    cols[3].metric("Blood pressure (mean)", f"{result.bp.systolic:.0f}/{result.bp.diastolic:.0f}",
                   help=f"mmHg; {result.bp_note}")
    if result.bp.cuffless:
        st.markdown("**Blood pressure:** " + plain(result.bp.category))
    else:
        st.markdown("**Blood pressure category:** " + plain(f"{result.bp.category} ({result.bp.guideline})"))
        if result.bp_crisis:
            st.error(plain("Hypertensive crisis range (above 180 and/or 120 mmHg): assess for target-organ damage "
                           "now. Reading(s), UTC: " + "; ".join(result.bp_crisis)))
    crisis_estimates_warning(result.crisis_estimates)
    if result.bp.caveat:
        st.caption(plain(f"Blood pressure: {result.bp.caveat}."))
    grade = (f"ESC/ESH 2018: {result.bp_esc}. " if result.bp_esc else "ESC/ESH grades not applied to cuffless "
             "estimates. " if result.bp.cuffless else "ESC/ESH office grades not applied to home readings. ")
    st.caption(plain(grade + f"{result.bp_note.capitalize()}."))
if latest is not None:
    band_key = "low (0)" if latest["band"] == "low" and latest["total"] == 0 else latest["band"]
    st.markdown(f"**Monitoring:** {RESPONSES[band_key][1]}. **Response (NEWS2 chart):** {RESPONSES[band_key][0]}")
    if latest["caveat"]:
        st.warning(plain(latest["caveat"]))
    points = {k.removeprefix("points_").replace("_", " "): v for k, v in latest.items() if k.startswith("points_")}
    with st.expander("NEWS2 working (points per parameter)"):
        st.table(pd.DataFrame([{"parameter": k, "points": "not measured" if pd.isna(v) else str(int(v))}
                               for k, v in points.items()]).set_index("parameter"))

SEVERITY_COLOURS = {"high": "red", "medium": "orange", "low": "blue"}
if len(result.alerts):
    st.subheader(f"Alerts ({len(result.alerts)})")
    # Whole sentences, newest first: each names the readings that fired it.
    newest_first = result.alerts.iloc[::-1].to_dict("records")
    recent = st.container()
    older = st.expander(f"{len(newest_first) - 10} older alert(s)") if len(newest_first) > 10 else None
    for shown, alert in enumerate(newest_first):
        (recent if shown < 10 else older).markdown(
            f":{SEVERITY_COLOURS.get(alert['severity'], 'gray')}[**{alert['severity']}**] · " + plain(alert["message"]))
else:
    st.caption("No alerts: no sustained shift, sudden jump or NEWS2 of 5 or more (or a red flag).")
if result.skipped:
    with st.expander(f"{len(result.skipped)} trend check(s) not possible"):
        for line in result.skipped:
            st.caption(plain(line))
if result.not_alerted:
    with st.expander(f"{len(result.not_alerted)} reading(s) not alerted (heart-rate rises and recoveries with walks)"):
        for line in result.not_alerted:
            st.caption(plain(line))

if figure is not None:
    st.plotly_chart(figure)
    # The two guidelines on this page disagree at 130-139 / 80-89: say which one the band follows.
    st.caption("Green bands: the range the summary calls normal (NEWS2 zero-point bands; blood pressure 111-139 / "
               "60-89 mmHg, below the ESC/ESH threshold of 140/90, where ACC/AHA 2017 already counts 130-139 / "
               "80-89 as stage 1 hypertension, as the category above does"
               + ("; SpO2 on scale 2: the prescribed 88-92 % target (NEWS2 also scores 93 % and above 0 on air, "
                  "1-3 on oxygen), which the summary's words also judge against" if scale == 2 else "")
               + "). Grey dashed line: the patient's own usual value, the median of their readings in the 28 days "
               "before (from the third reading on), which the trend alerts compare with. Red crosses: artefacts, "
               "shown but never scored. Diamonds: the readings behind an alert (hover for which).")


@st.cache_data(show_spinner=False, max_entries=16)
def _summaries_seen(version: str, stamp: float) -> int | None:  # noqa: ARG001 (stamp: a rewritten version is re-read)
    return summaries_in_training_data(version)


def _stamp(version) -> float:  # noqa: ANN001
    card = version / "card.json"
    return card.stat().st_mtime if card.is_file() else 0.0


# Kept per patient and per summary: switching patients, or changing the window, setting or scale
# (another sentence), must not offer a case scored on a different summary.
summary_job_key = f"vitals_job:{patient}:{hashlib.sha256(result.summary.encode()).hexdigest()[:16]}"
st.subheader("What the classifier reads")
st.code(result.summary, language=None, wrap_lines=True)
if user.can("notes.predict"):
    version = active_model_dir(settings)
    if version is not None:
        seen = _summaries_seen(str(version), _stamp(version))
        if seen == 0:
            st.warning(plain(f"The served model ({version.name}) was trained on no vitals summaries: its scores for "
                             "this one are untested. Read them as a demonstration of the explanation, not as a risk; "
                             "train a version on labelled summaries before relying on them."))
        elif seen is None:
            st.info(plain(f"The training data of the served model ({version.name}) or of a version it continues "
                          "was not stored, so whether it has learned to read vitals summaries is unknown."))
        else:
            st.caption(plain(f"The served model ({version.name}) was trained on {seen:,} vitals summaries."))
    if version is not None and st.button("Score and explain this summary", help="Stored as a case like any note"):
        note = Note(text=result.summary, note_id=f"vitals:{patient}:{result.vitals['time'].max():%Y%m%dT%H%M}",
                    patient_id=patient, source="vitals summary")
        st.session_state[summary_job_key] = submit_for_scoring(factory, user, [note], version)


@st.fragment(run_every=0.3)
def _wait(job_id: int) -> None:
    fresh = recheck("vitals.upload")  # a poll runs without the page's checks: the session may have ended since
    job = get_job(factory, job_id)
    job_status(job, fresh)
    if job.finished:
        st.rerun()


job_id = st.session_state.get(summary_job_key)
if job_id is not None:
    job = get_job(factory, job_id)
    if not job.finished:
        _wait(job_id)
    elif job.status == "succeeded" and job.result.get("note_ids"):
        if st.button("Open the scored summary as a case", type="primary"):
            open_case(int(job.result["note_ids"][0]))
    else:
        job_status(job, user)
