"""Sign-in for the pages: the form, the per-page role check and the sidebar account box.

The browser session keeps only the random session token (``st.session_state``); every
rerun checks it against the database (:func:`healthmon.services.accounts.check_session`), so expiry,
sign-out, deactivation and role changes take effect on the next click.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from healthmon.services.accounts import AuthError, SignedIn, check_session, sign_in, sign_out
from healthmon.ui.components import plain
from healthmon.ui.resources import get_database, get_settings

TOKEN_KEY = "auth_token"


def current_user() -> SignedIn | None:
    token = st.session_state.get(TOKEN_KEY)
    if not token:
        return None
    try:
        return check_session(get_database(), token, get_settings())
    except AuthError as exc:
        st.session_state.pop(TOKEN_KEY, None)
        st.session_state["auth_notice"] = f"You were signed out: {exc.found}. Sign in again to continue."
        return None


def sign_in_form() -> None:
    """The sign-in form; on success the app reruns signed in."""
    notice = st.session_state.pop("auth_notice", None)
    if notice:
        st.info(notice)
    with st.form("sign_in", clear_on_submit=False, border=True):
        st.subheader("Sign in")
        name = st.text_input("User name", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            user = sign_in(get_database(), name, password, get_settings())
        except AuthError as exc:
            st.error(plain(f"Sign-in refused: {exc.found}. {exc.fix[0].upper()}{exc.fix[1:]}."), icon="🚫")
        else:
            st.session_state[TOKEN_KEY] = user.token
            st.rerun()
    st.caption("No account yet? `make run` prints the demo account once; an admin adds others on the Admin page "
               "or with `python -m healthmon users add NAME --role ROLE`.")


def require_page(permission: str) -> SignedIn:
    """Stop the page unless someone is signed in with a role allowed ``permission``."""
    user = current_user()
    if user is None:
        sign_in_form()
        st.stop()
    if not user.can(permission):
        st.error(f"Your role ({user.role}) cannot open this page. Ask an admin if you need it.", icon="🔒")
        st.stop()
    return user


def account_sidebar(user: SignedIn) -> None:
    with st.sidebar:
        st.markdown(f"Signed in as **{plain(user.name)}** · {user.role}")
        if st.button("Sign out", key="sign_out"):
            sign_out(get_database(), user.token)
            st.session_state.pop(TOKEN_KEY, None)
            st.rerun()


@dataclass(frozen=True)
class PageSpec:
    path: str
    title: str
    icon: str
    permission: str


# The dashboard's pages and who may open each: app.py builds the navigation from this
# (a role never sees a page it cannot use) and each page checks it again on every run.
PAGES: dict[str, PageSpec] = {spec.title: spec for spec in (
    PageSpec("pages/1_Notes.py", "Notes", ":material/description:", "notes.predict"),
    PageSpec("pages/2_Review.py", "Review", ":material/fact_check:", "cases.review"),
    PageSpec("pages/3_Case.py", "Case", ":material/article:", "cases.view"),
    PageSpec("pages/4_Vitals.py", "Vitals", ":material/monitor_heart:", "vitals.upload"),
    PageSpec("pages/7_Patient.py", "Patient", ":material/assignment_ind:", "advice.decide"),
    PageSpec("pages/5_Models.py", "Models", ":material/model_training:", "models.view"),
    PageSpec("pages/6_Admin.py", "Admin", ":material/admin_panel_settings:", "users.manage"),
)}


def page_setup(title: str) -> SignedIn:
    """First call of every page: the signed-in user, allowed to open this page, or a stop."""
    user = require_page(PAGES[title].permission)
    st.title(title)
    return user


def open_case(note_id: int) -> None:
    """Go to the Case page showing this case."""
    st.session_state["case_id"] = int(note_id)
    st.switch_page(PAGES["Case"].path)
