"""healthmon dashboard entry: sign-in, navigation by role, and the home overview."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from healthmon.errors import HealthmonError
from healthmon.services.cases import open_review_count
from healthmon.services.vitals import stored_patient_count
from healthmon.ui.components import SYNTHETIC_BANNER, jobs_panel, model_summary, show_error
from healthmon.ui.resources import active_model_dir, get_card, get_database, get_settings, get_worker, register_served
from healthmon.ui.session import PAGES, account_sidebar, current_user, open_page_asked_for, send_to_sign_in

LOGO = str(Path(__file__).parent / "assets" / "logo.svg")
st.set_page_config(page_title="healthmon", page_icon=LOGO, layout="wide")
st.logo(LOGO)

try:
    factory = get_database()  # migrations run at start: the schema is current before any page uses it
except HealthmonError as exc:
    show_error(exc)
    st.stop()
get_worker()  # background jobs start running as soon as the dashboard does


def sign_in_page() -> None:
    st.title("healthmon")
    st.caption("Calibrated risk scores from clinical notes, for preventive-care review.")
    version = active_model_dir(get_settings())
    if version is not None and get_card(str(version)).synthetic_data:
        st.warning(SYNTHETIC_BANNER, icon="⚠️")
    send_to_sign_in()


def home() -> None:
    st.title("healthmon")
    st.caption("Calibrated risk scores from clinical notes, for preventive-care review.")
    version = active_model_dir(get_settings())
    card = get_card(str(version)) if version is not None else None
    if version is None:
        st.info("No model is available yet. Build the demo model with `python -m healthmon demo` (or `make run`), "
                "or set HEALTHMON_ACTIVE_MODEL to a version folder written by `python -m healthmon train`.")
    else:
        register_served(version)
        if card.synthetic_data:
            st.warning(SYNTHETIC_BANNER, icon="⚠️")
    counts = open_review_count(factory)
    cols = st.columns(3)
    cols[0].metric("Cases awaiting a first review", counts["unreviewed"])
    cols[1].metric("Cases where reviewers disagree", counts["disagreements"])
    cols[2].metric("Patients with stored vitals", stored_patient_count(factory))
    cols[2].caption("NEWS2, blood pressure and trend alerts per patient on the Vitals page.")
    links = st.columns(3)
    if user is not None and user.can("notes.predict"):
        links[0].page_link(PAGES["Notes"].path, label="Score notes", icon=PAGES["Notes"].icon)
    links[1].page_link(PAGES["Review"].path, label="Open the review queue", icon=PAGES["Review"].icon)
    links[2].page_link(PAGES["Case"].path, label="Find a case", icon=PAGES["Case"].icon)
    if version is not None:
        st.subheader("Served model")
        model_summary(card, version.name, banner=False)
    jobs_panel(("predict", "explain", "retrain", "finetune"), title="Recent background jobs")


user = current_user()
if user is None:
    # Every page is registered (hidden), so a page opened while signed out runs its own check and
    # sends the browser to sign in and back to that page, instead of Streamlit's "Page not found".
    navigation = st.navigation([st.Page(sign_in_page, title="Sign in", icon=":material/login:", default=True)]
                               + [st.Page(spec.path, title=spec.title, icon=spec.icon) for spec in PAGES.values()],
                               position="hidden")
else:
    account_sidebar(user)
    pages = [st.Page(home, title="Home", icon=":material/home:", default=True)]
    pages += [st.Page(spec.path, title=spec.title, icon=spec.icon) for spec in PAGES.values() if user.can(spec.permission)]
    navigation = st.navigation(pages)
    open_page_asked_for()
navigation.run()
