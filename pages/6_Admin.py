"""Admin: accounts and roles, their API tokens, and the audit log."""

from __future__ import annotations

import secrets

import pandas as pd
import streamlit as st

from healthmon.errors import HealthmonError
from healthmon.services.accounts import (
    ROLES,
    accounts,
    add_user,
    audit_log,
    set_active,
    set_password,
    set_role,
    unlock,
)
from healthmon.services.tokens import MAX_DAYS, create_token, list_tokens, revoke_token
from healthmon.ui.components import plain, show_error
from healthmon.ui.resources import get_database
from healthmon.ui.session import page_setup

user = page_setup("Admin")
factory = get_database()
users_tab, tokens_tab, audit_tab = st.tabs(["Users", "API tokens", "Audit log"])


def _act(action, success: str) -> bool:  # noqa: ANN001
    try:
        action()
    except HealthmonError as exc:
        show_error(exc)
        return False
    st.success(plain(success))
    return True


with users_tab:
    people = accounts(factory, user)
    table_slot = st.container()  # filled last, so it already shows this run's changes
    st.caption("Roles: **clinician** scores notes and reviews; **annotator** reviews only; **admin** also trains, "
               "promotes models, adjudicates and manages users.")
    add_col, change_col = st.columns(2)
    with add_col.form("add_user", clear_on_submit=True):
        st.markdown("**Add a user**")
        name = st.text_input("Name")
        role = st.selectbox("Role", ROLES, index=0)
        password = st.text_input("Password (blank: generate one)", type="password")
        if st.form_submit_button("Add user", type="primary"):
            chosen = password or secrets.token_urlsafe(12)
            added = _act(lambda: add_user(factory, user, name, role, chosen), f"Added {name.strip()} ({role}).")
            if added and not password:
                st.info(plain(f"Generated password for {name.strip()}: {chosen} (shown once; pass it on safely)."))
    with change_col.form("change_user"):
        st.markdown("**Change a user**")
        names = [p["name"] for p in people]
        # Keyed: the choice survives the list growing when someone is added.
        target = st.selectbox("User", names, key="change_target") if names else None
        new_role = st.selectbox("New role", ["(unchanged)", *ROLES], key="change_role")
        new_password = st.text_input("New password (blank: unchanged)", type="password")
        status = st.radio("Account", ["(unchanged)", "active", "deactivated"], horizontal=True)
        if st.form_submit_button("Apply") and target:
            if new_role != "(unchanged)":
                _act(lambda: set_role(factory, user, target, new_role), f"{target} is now {new_role}.")
            if new_password:
                _act(lambda: set_password(factory, user, target, new_password),
                     f"Password of {target} changed; their other sessions were signed out.")
            if status != "(unchanged)":
                _act(lambda: set_active(factory, user, target, status == "active"), f"{target} is {status}.")
    locked = {p["name"]: p["locked"] for p in people if p["locked"]}
    if locked:
        # Repeated wrong passwords lock an account, longer each time; the third lock in a row
        # holds until an admin lifts it here (or with `python -m healthmon users unlock NAME`).
        with st.form("unlock_user"):
            st.markdown("**Locked accounts**")
            to_unlock = st.selectbox("Account", list(locked), key="unlock_target",
                                     format_func=lambda n: f"{n} (locked {locked[n]})")
            if st.form_submit_button("Unlock") and to_unlock:
                _act(lambda: unlock(factory, user, to_unlock), f"{to_unlock} is unlocked and may sign in again.")
    with table_slot:
        st.dataframe(pd.DataFrame(accounts(factory, user)), hide_index=True, width="stretch")

with tokens_tab:
    table_slot = st.container()  # filled last, so it already shows this run's changes
    st.caption("A token acts as its account through the REST API (`Authorization: Bearer ...`), with the "
               "account's current role: deactivating the account stops its tokens at once.")
    create_col, revoke_col = st.columns(2)
    with create_col.form("create_token", clear_on_submit=True):
        st.markdown("**Create a token**")
        active_names = [p["name"] for p in accounts(factory, user) if p["active"]]
        owner = st.selectbox("Account", active_names, key="token_account") if active_names else None
        label = st.text_input("Label (what will use it)", placeholder="epic-integration")
        days = st.number_input("Valid for (days)", min_value=1, max_value=MAX_DAYS, value=90, step=1)
        if st.form_submit_button("Create token", type="primary") and owner:
            made: list = []
            if _act(lambda: made.append(create_token(factory, user, owner, label, days=days)),
                    f"Created token {label.strip()} for {owner}."):
                secret, view = made[0]
                st.warning(plain(f"Copy the token for {owner} now: it is not stored and will not be shown again "
                                 f"(expires {view.expires_at:%Y-%m-%d})."))
                st.code(secret, language=None)
    with revoke_col.form("revoke_token"):
        st.markdown("**Revoke a token**")
        live = {f"{t.prefix}… {t.name} ({t.account})": t.id for t in list_tokens(factory, user) if t.status == "active"}
        chosen = st.selectbox("Active token", list(live), key="token_revoke") if live else None
        if not live:
            st.caption("No active tokens.")
        if st.form_submit_button("Revoke token") and chosen:
            _act(lambda: revoke_token(factory, user, live[chosen]), f"Revoked {chosen}; it stops working at once.")
    with table_slot:
        rows = [{"account": t.account, "name": t.name, "prefix": t.prefix, "status": t.status,
                 "created": t.created_at, "created by": t.created_by, "expires": t.expires_at,
                 "last used": t.last_used_at} for t in list_tokens(factory, user)]
        columns = ["account", "name", "prefix", "status", "created", "created by", "expires", "last used"]
        st.dataframe(pd.DataFrame(rows, columns=columns), hide_index=True, width="stretch")

with audit_tab:
    filters = st.columns(2)
    action = filters[0].selectbox("Action", ["(all)", "auth.", "user.", "token.", "api.", "review.", "adjudication.", "version.", "job.", "notes."])
    actor = filters[1].text_input("Actor (exact name)")
    entries = audit_log(factory, user, action="" if action == "(all)" else action, actor=actor.strip())
    frame = pd.DataFrame(entries)
    st.dataframe(frame, hide_index=True, width="stretch")
    st.caption(f"Newest {len(frame)} entries.")
    st.download_button("Download (CSV)", frame.to_csv(index=False), file_name="healthmon-audit.csv")
