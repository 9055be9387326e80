"""Patient: one person's scores, vitals and the advice they fire; a clinician approves, edits or
dismisses each draft, then downloads the case report (HTML, PDF) or the FHIR export."""

from __future__ import annotations

from datetime import date

import streamlit as st

from healthmon.advice.engine import evaluate
from healthmon.advice.rules import URGENCIES
from healthmon.advice.snapshot import scale_on_record
from healthmon.errors import HealthmonError
from healthmon.report import render_html, render_pdf
from healthmon.report.fhir import fhir_json
from healthmon.services.advice import (
    SPO2_REASON_MAX,
    decide_advice,
    draft_advice,
    news2_off_record,
    patient_advice,
    set_demographics,
    set_spo2_scale,
    undrafted,
)
from healthmon.services.links import link_ref, resolve_ref
from healthmon.services.patients import list_patients, patient_snapshot, recorded_spo2_scale
from healthmon.services.reports import build_report
from healthmon.services.vitals import stored_setting
from healthmon.types import AdviceView
from healthmon.ui.components import crisis_estimates_warning, plain, show_error, spo2_scale_switch
from healthmon.ui.resources import get_classifier, get_database, get_rules, get_settings
from healthmon.ui.session import page_setup

# Streamlit's coloured text, not emoji: a browser without an emoji font shows emoji as empty boxes.
URGENCY_COLOURS = {"emergency": "red", "urgent": "orange", "soon": "blue", "routine": "green"}
STATUS_WORDS = {"draft": "Draft: awaiting your decision", "approved": "Approved", "edited": "Approved with edits",
                "dismissed": "Dismissed"}

user = page_setup("Patient")
factory = get_database()
settings = get_settings()

patients = list_patients(factory)
if not patients:
    st.info("No patients yet: score notes that carry a patient id on the Notes page, or store vitals on the Vitals page.")
    st.stop()
# ?patient=REF: an opaque id, so the address bar, history and proxy logs never hold the identifier.
asked = st.query_params.get("patient", "")
linked = resolve_ref(factory, "patient", asked)
default = patients.index(linked) if linked in patients else None if asked else 0
if asked and default is None:
    # Never another patient in place of the one a link asked for: say so and let the clinician pick.
    st.warning("That patient link is not known here (it may be from before links used opaque ids, or from "
               "another installation). Pick the patient below.")
left, middle, right = st.columns([3, 1, 1])
patient_id = left.selectbox("Patient", patients, index=default, key="patient_pick", placeholder="Choose a patient")
if patient_id is None:
    st.stop()
# Per patient, preset from the readings as the Vitals page does: a ward patient's choice must not
# carry over to a wearable's readings (NEWS2 without its out-of-setting caveat, office BP
# thresholds on home readings), nor a home patient's to the ward (no emergency advice drafted).
try:
    preset_setting = stored_setting(factory, patient_id)
except HealthmonError as exc:
    show_error(exc)
    st.stop()
settings_offered = ["hospital", "home"]
setting = middle.radio("Setting", settings_offered, horizontal=True, index=settings_offered.index(preset_setting),
                       key=f"patient_setting:{patient_id}",
                       help="Preset from the readings: hospital where consciousness or air/oxygen were charted, else "
                            "home. NEWS2 is an adult acute-care score; home readings use the home "
                            "blood-pressure thresholds.")
# Per patient, preset from the scale on record: a prescribed 88-92 % target belongs to one
# patient, and must not carry over to the next. Switching it here looks at the other scale for
# this view only; recording it (below) changes it everywhere.
try:
    recorded = recorded_spo2_scale(factory, patient_id)
except HealthmonError as exc:
    show_error(exc)
    st.stop()
on_record = scale_on_record(recorded)
scale_key = f"patient_spo2_scale:{patient_id}"
scale = spo2_scale_switch(right, key=scale_key, recorded=recorded,
                          help="Preset from the scale on record. Scale 2 only for patients with a prescribed 88-92% "
                               "target (e.g. hypercapnic failure)")
st.query_params["patient"] = link_ref(factory, "patient", patient_id)

try:
    rules = get_rules(str(settings.advice_rules) if settings.advice_rules else None)
    snapshot = patient_snapshot(factory, patient_id, setting=setting, spo2_scale=scale)
    result = evaluate(rules, snapshot.findings)
    items = patient_advice(factory, patient_id)
except HealthmonError as exc:
    show_error(exc)
    st.stop()

with st.expander(f"Demographics: age {snapshot.age:.0f}" if snapshot.age is not None else "Demographics: age unknown",
                 expanded=snapshot.age is None):
    st.caption("The screening rules read age and sex; without them they are listed as not checked.")
    with st.form(f"demographics:{patient_id}"):  # per patient: nothing typed carries over to the next
        known = st.checkbox("Birth date known", value=snapshot.birth_date is not None)
        born = st.date_input("Birth date", value=snapshot.birth_date or date(1970, 1, 1), min_value=date(1890, 1, 1),
                             max_value=date.today())
        sexes = ["unknown", "female", "male"]
        sex = st.selectbox("Sex", sexes, index=sexes.index(snapshot.sex or "unknown"))
        if st.form_submit_button("Save demographics"):
            st.session_state.pop("patient_report", None)
            try:
                set_demographics(factory, user, patient_id, birth_date=born if known else None,
                                 sex=None if sex == "unknown" else sex)
                st.rerun()
            except HealthmonError as exc:
                show_error(exc)

with st.expander("SpO2 scale: " + (plain(recorded.words) if recorded else "none recorded (scored on scale 1)"),
                 expanded=scale != on_record):
    st.caption(plain(snapshot.spo2_scale_sentence or "No vitals stored: no NEWS2 to score.") + " Scale 2 is for a "
               "target of 88-92 % prescribed by a competent clinical decision-maker (RCP 2017), e.g. for confirmed "
               "hypercapnic respiratory failure; recording it here makes every page, the CLI and the report use it.")
    if user.can("advice.decide"):
        # Per patient, and the reason starts empty: a reason on record belongs to that decision, and
        # must not be stored again against a withdrawal or another patient's target.
        record_key, reason_key = f"spo2_scale_record:{patient_id}", f"spo2_scale_reason:{patient_id}"
        if f"spo2_scale_form_reset:{patient_id}" in st.session_state:
            st.session_state[record_key] = st.session_state.pop(f"spo2_scale_form_reset:{patient_id}")
            st.session_state[reason_key] = ""
        elif record_key not in st.session_state:
            st.session_state[record_key] = scale
        with st.form(f"spo2_scale:{patient_id}"):
            chosen = st.radio("Record scale", [1, 2], horizontal=True, key=record_key)
            reason = st.text_input("Reason (needed for scale 2)", max_chars=SPO2_REASON_MAX, key=reason_key,
                                   help="e.g. hypercapnic respiratory failure on blood gas; for scale 1, why the "
                                        "target was withdrawn (optional)")
            if st.form_submit_button("Record SpO2 scale"):
                try:
                    set_aside = set_spo2_scale(factory, user, patient_id, chosen, reason=reason)
                except HealthmonError as exc:
                    show_error(exc)
                else:
                    if set_aside:
                        st.session_state["spo2_set_aside"] = (
                            f"{len(set_aside)} pending draft(s) fired by a NEWS2 on the other SpO2 scale were set "
                            f"aside (listed under Superseded drafts); draft again on scale {chosen} below.")
                    # Forgetting which record the switch came from presets it from the new one,
                    # without the "changed in another session" notice; the form starts afresh on
                    # the next run (a widget's state can only be written before it is drawn).
                    st.session_state.pop(f"{scale_key}:preset_from", None)
                    st.session_state[f"spo2_scale_form_reset:{patient_id}"] = chosen
                    st.session_state.pop("patient_report", None)
                    st.rerun()

facts = snapshot.findings
cols = st.columns(4)
top = sorted(facts.risk.items(), key=lambda kv: -kv[1])[:1]
# The second line of each figure says what it is, as a caption: a metric's delta would draw an up arrow.
cols[0].metric("Highest risk", f"{top[0][1]:.0%}" if top else "-",
               help="Calibrated probability, highest over the patient's scored notes.")
cols[0].caption(plain(top[0][0] if top else "no scored notes"))
latest_news2 = snapshot.vitals.latest_news2 if snapshot.vitals is not None else None
cols[1].metric("NEWS2", "-" if facts.news2_total is None else facts.news2_total,
               help=plain(f"Royal College of Physicians, 2017; {setting} setting; at {facts.news2_time}")
               if facts.news2_time else None)
cols[1].caption(plain((f"{facts.news2_band} band" + ("" if facts.news2_complete else ", partial score")
                       + (", SpO2 scale 2" if scale == 2 else "")) if facts.news2_band else "no vitals"))
measured_bp = snapshot.vitals.bp if snapshot.vitals is not None else None
if measured_bp is not None and measured_bp.cuffless:  # estimates: shown as a trend, kept from the rules
    bp_value = f"{measured_bp.systolic:.0f}/{measured_bp.diastolic:.0f} mmHg"
    bp_help, bp_words = "Mean of a cuffless wearable's estimates, not used by the advice rules", measured_bp.category
else:
    bp_value = "-" if facts.bp_systolic is None else f"{facts.bp_systolic:.0f}/{facts.bp_diastolic:.0f} mmHg"
    bp_help = (f"{facts.bp_window}; {'home' if facts.bp_setting == 'home' else 'office'} thresholds"
               if facts.bp_window else None)
    bp_words = facts.bp_category or "no paired readings"
cols[2].metric("Blood pressure", bp_value, help=plain(bp_help) if bp_help else None)
cols[2].caption(plain(bp_words))
cols[3].metric("Alerts", len(facts.alerts), help="Trend and NEWS2 alerts from the last 14 days of readings")
cols[3].caption("listed below" if facts.alerts else "none")
if snapshot.vitals is not None:
    crisis_estimates_warning(snapshot.vitals.crisis_estimates)
if latest_news2 is not None and latest_news2["caveat"]:
    st.warning(plain(f"NEWS2: {latest_news2['caveat']}"))
if facts.alerts:
    with st.expander(f"{len(facts.alerts)} alert(s), each with the readings that fired it", expanded=True):
        for message in facts.alerts.values():
            st.caption(plain(message))
st.caption(plain(f"{len(snapshot.cases)} scored note(s); risk per label: "
                 + (", ".join(f"{label} {p:.0%}" for label, p in sorted(facts.risk.items(), key=lambda kv: -kv[1]))
                    or "none")))


def _decide(item: AdviceView, decision: str, *, text: str | None = None, note: str = "") -> None:
    st.session_state.pop("patient_report", None)  # a report prepared before this decision would be out of date
    try:
        decide_advice(factory, user, item.id, decision, seen_version=item.version, text=text, note=note)
        st.toast(plain(f"{STATUS_WORDS[decision]}: {item.title}"))
    except HealthmonError as exc:
        st.session_state["advice_error"] = str(exc)


st.subheader("Advice")
st.caption("Each finding that fires a rule is a draft until you approve it (as written or edited) or dismiss it. "
           "Only approved advice goes into the report.")
if "spo2_set_aside" in st.session_state:
    st.info(plain(st.session_state.pop("spo2_set_aside")))
if "advice_error" in st.session_state:
    st.error(plain(st.session_state.pop("advice_error")), icon="🚫")
# Drafting is a clinician's action, not a side effect of looking: switching the setting to
# compare would otherwise leave drafts from both settings behind.
new = undrafted(factory, patient_id, result)
if result.advice:
    st.markdown(plain(f"{len(result.advice)} rule(s) fire on these findings ({setting} setting, SpO2 scale {scale}): "
                      + ", ".join(a.rule.id for a in result.advice) + "."))
if news2_off_record(new, scale, on_record):  # draft_advice would refuse it
    st.info(plain(f"Advice resting on NEWS2 is drafted on the SpO2 scale on record (scale {on_record}); this view "
                  f"scores scale {scale}. Record scale {scale} above to draft on it, or switch back."))
elif new and st.button(f"Draft advice for {len(new)} new finding(s)", type="primary", key="draft_advice"):
    try:
        draft_advice(factory, user, snapshot, result)
        st.session_state.pop("patient_report", None)
        st.rerun()
    except HealthmonError as exc:
        show_error(exc)
order = {u: i for i, u in enumerate(reversed(URGENCIES))}
current = sorted((i for i in items if i.status != "superseded"), key=lambda i: (i.status != "draft", order[i.urgency], -i.id))
superseded = [i for i in items if i.status == "superseded"]
if not current and not result.advice:
    st.info("No rule fires for this patient's findings.")
for item in current:
    with st.container(border=True):
        st.markdown(f":{URGENCY_COLOURS[item.urgency]}[**{item.urgency}**] **{plain(item.title)}**  \n"
                    f"{plain(item.kind)} · follow up "
                    f"{'the same day' if item.follow_up_days == 0 else f'in {item.follow_up_days} days'} · "
                    f"{plain(STATUS_WORDS[item.status])}")
        st.markdown("Fired by: " + "; ".join(plain(t["text"]) for t in item.triggers))
        st.caption(plain(f"Source: {item.source} (rule {item.rule_id})"))
        if item.status == "draft":
            text = st.text_area("Advice", item.text, key=f"advice-text-{item.id}", height=90)
            buttons = st.columns([1, 1, 2, 1])
            if buttons[0].button("Approve", key=f"approve-{item.id}", type="primary", disabled=text != item.draft_text,
                                 help="Approve the advice as drafted (edit the text to approve your own wording)."):
                _decide(item, "approved")
                st.rerun()
            if buttons[1].button("Approve edited", key=f"edit-{item.id}", disabled=text == item.draft_text):
                _decide(item, "edited", text=text)
                st.rerun()
            reason = buttons[2].text_input("Reason to dismiss", key=f"reason-{item.id}", label_visibility="collapsed",
                                           placeholder="Reason to dismiss")
            if buttons[3].button("Dismiss", key=f"dismiss-{item.id}"):
                _decide(item, "dismissed", note=reason)
                st.rerun()
        else:
            st.markdown(plain(item.text))
            when = f"{item.decided_at:%Y-%m-%d %H:%M} UTC" if item.decided_at else ""
            st.caption(plain(f"{STATUS_WORDS[item.status]} by {item.decided_by} at {when}"
                             + (f": {item.decision_note}" if item.decision_note else "")))
if superseded:
    with st.expander(f"Superseded drafts ({len(superseded)}): replaced by a newer draft of the same rule, or set "
                     "aside when another SpO2 scale was recorded"):
        for item in superseded:
            st.markdown(plain(f"{item.title}, drafted {item.created_at:%Y-%m-%d %H:%M} UTC: "
                              + "; ".join(t["text"] for t in item.triggers)
                              + (f" ({item.decision_note})" if item.decision_note else "")))
if result.unknown:
    with st.expander(f"Not checked for want of data ({len(result.unknown)} rule(s))"):
        for rule_id, missing in sorted(result.unknown.items()):
            st.markdown(plain(f"{rule_id}: needs {', '.join(missing)}"))

st.subheader("Case report")
st.caption("Risk scores with the words behind them, vitals chart and scores, approved advice with its sources, "
           "reviewers, model versions and times. Explanations not computed yet are computed now.")
if st.button("Prepare the report", key="prepare_report"):
    try:
        with st.spinner("Explaining the scores and laying out the report ..."):
            report = build_report(factory, patient_id, generated_by=user.name, rules=rules,
                                  rules_path=settings.advice_rules, setting=setting, spo2_scale=scale,
                                  load_classifier=lambda folder: get_classifier(folder))
            page = render_html(report).encode()
            # The setting and scale change the scores in it: a report prepared under others is not offered.
            st.session_state["patient_report"] = (patient_id, page, None, (setting, scale))
            st.session_state["patient_report"] = (patient_id, page, render_pdf(report), (setting, scale))
    except HealthmonError as exc:
        show_error(exc)  # without Pango the PDF fails; the HTML prepared above is still offered
prepared = st.session_state.get("patient_report")
if prepared and prepared[0] == patient_id and prepared[3] == (setting, scale):
    stem = f"healthmon-report-{''.join(c if c.isalnum() or c in '-_' else '_' for c in patient_id)}"
    downloads = st.columns(3)
    if prepared[2] is not None:
        downloads[0].download_button("Download PDF", prepared[2], f"{stem}.pdf", "application/pdf", key="report_pdf")
    downloads[1].download_button("Download HTML", prepared[1], f"{stem}.html", "text/html", key="report_html")
    try:
        downloads[2].download_button("Download FHIR (JSON)", fhir_json(snapshot).encode(), f"{stem}.fhir.json",
                                     "application/fhir+json", key="report_fhir")
    except HealthmonError as exc:
        show_error(exc)
