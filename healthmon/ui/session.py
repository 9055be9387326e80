"""Who is signed in, for the pages: the session from the cookie, the page check, the account box.

Sign-in itself happens outside Streamlit, at ``/signin`` (:mod:`healthmon.ui.web_auth`), which
sets a signed HttpOnly cookie holding only the session token; single sign-on goes through
Streamlit's ``st.login``. Every run of a page and every run of a fragment reads the session
again (:func:`current_user`) before it shows data or changes anything, so sign-out, expiry,
deactivation and role changes take effect on the next click or poll, in every tab.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import streamlit as st

from healthmon.escaping import escape_markdown as plain  # not ui.components: it imports this module
from healthmon.services import web_sessions
from healthmon.services.accounts import AuthError, SignedIn, check_session, sign_out
from healthmon.services.links import link_ref
from healthmon.ui.navigation import PAGES
from healthmon.ui.resources import get_database, get_settings
from healthmon.ui.web_auth import NEXT_COOKIE_NAME, safe_next, sign_in_url


def _sso_user(touch: bool) -> SignedIn | None:
    """The session of a single sign-on, from the claims in Streamlit's identity cookie."""
    settings = get_settings()
    if not web_sessions.sso_configured(settings) or not st.user.is_logged_in:
        return None
    try:
        user, new = web_sessions.sso_session(get_database(), settings, st.user.to_dict(), touch=touch)
    except AuthError as exc:
        st.session_state["auth_notice"] = f"Sign-in refused: {exc.found}. {exc.fix[0].upper()}{exc.fix[1:]}."
        return None
    if new:
        st.session_state["sso_next"] = st.context.cookies.get(NEXT_COOKIE_NAME, "/")
    return user


def open_page_asked_for() -> None:
    """After a provider sign-in (which always returns to "/"), open the page whose link asked for it."""
    target = urlsplit(safe_next(st.session_state.pop("sso_next", "/")))
    title = target.path.strip("/")
    if title in PAGES:
        st.switch_page(PAGES[title].path, query_params=dict(parse_qsl(target.query)))


#: A session token put in the Streamlit session by server code, never by a browser: how Streamlit's
#: AppTest (which cannot send cookies) signs a page run in. Checked exactly like the cookie's.
TOKEN_KEY = "auth_token"


def current_user(*, touch: bool = True) -> SignedIn | None:
    """The signed-in user, read afresh from the database on every call; None when signed out.

    ``touch=False`` (a fragment's automatic poll) does not count as activity for the idle limit.
    """
    token = st.session_state.get(TOKEN_KEY)
    if token:
        try:
            return check_session(get_database(), token, get_settings(), touch=touch)
        except AuthError as exc:
            st.session_state.pop(TOKEN_KEY, None)
            st.session_state["auth_notice"] = f"You were signed out: {exc.found}. Sign in again to continue."
            return None
    cookie = st.context.cookies.get(web_sessions.COOKIE_NAME)
    if cookie:
        user = web_sessions.cookie_session(get_database(), get_settings(), cookie, touch=touch)
        if user is not None:
            return user
        st.session_state["auth_notice"] = "Your session has ended (signed out, expired or the account changed)."
    return _sso_user(touch)


def _redirect(url: str) -> None:
    """Send the browser to ``url`` (a path on this server) and stop the run.

    Streamlit has no public redirect; this is the message ``st.login``/``st.logout`` use, which its
    frontend answers with ``window.location.href = url``.
    """
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is not None:
        msg = ForwardMsg()
        msg.auth_redirect.url = url
        ctx.enqueue(msg)
    st.stop()


def _here() -> str:
    """This page's path and query, for coming back after signing in."""
    url = urlsplit(st.context.url or "/")
    return url.path + (f"?{url.query}" if url.query else "")


def send_to_sign_in() -> None:
    """Signed out: explain why (when there is a reason), then go to the sign-in page."""
    notice = st.session_state.pop("auth_notice", None)
    settings = get_settings()
    if notice and web_sessions.sso_configured(settings) and st.user.is_logged_in:
        # A refused or ended single sign-on: say why, and offer to sign out of the provider too.
        st.error(plain(notice), icon="🚫")
        if st.button("Sign out of the hospital sign-in"):
            st.logout()
        st.stop()
    if notice:
        st.info(plain(notice))
    url = sign_in_url(_here())
    st.link_button("Sign in", url, type="primary")  # shown should the redirect not happen
    _redirect(url)


def require_page(permission: str) -> SignedIn:
    """Stop the page unless someone is signed in with a role allowed ``permission``."""
    user = current_user()
    if user is None:
        send_to_sign_in()  # stops the run
    if not user.can(permission):
        st.error(f"Your role ({user.role}) cannot open this page. Ask an admin if you need it.", icon="🔒")
        st.stop()
    return user


def recheck(permission: str | None = None, *, activity: bool = False) -> SignedIn:
    """The session checked again, for a fragment's run or just before an action.

    A fragment reruns on its own (a poll, a button inside it) without the page's checks; when the
    session has ended, the whole app reruns and shows the sign-in instead of the fragment. Only
    ``activity=True`` (a click) resets the idle timer: a screen left polling still signs out.
    """
    user = current_user(touch=activity)
    if user is None or (permission is not None and not user.can(permission)):
        st.rerun(scope="app")
    return user


def account_sidebar(user: SignedIn) -> None:
    with st.sidebar:
        st.markdown(f"Signed in as **{plain(user.name)}** · {user.role}")
        if st.button("Sign out", key="sign_out"):
            sign_out(get_database(), user.token)  # the session row ends: the cookie is dead everywhere
            st.session_state.pop(TOKEN_KEY, None)
            if web_sessions.sso_configured(get_settings()) and st.user.is_logged_in:
                st.logout()  # clears Streamlit's identity cookie (and the provider's session, if it can)
                st.stop()
            _redirect(sign_in_url("/"))


def page_setup(title: str) -> SignedIn:
    """First call of every page: the signed-in user, allowed to open this page, or a stop."""
    user = require_page(PAGES[title].permission)
    st.title(title)
    return user


def open_case(note_id: int) -> None:
    """Go to the Case page showing this case (its link carries an opaque id, not the row number)."""
    st.switch_page(PAGES["Case"].path, query_params={"case": link_ref(get_database(), "case", int(note_id))})


def patient_link_params(patient_id: str) -> dict[str, str]:
    """Query parameters of a link to the Patient page: an opaque id, never the patient's identifier."""
    return {"patient": link_ref(get_database(), "patient", patient_id)}
