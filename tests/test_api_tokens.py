"""API tokens on a real database: only hashes stored, role and active flag read at each use."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
import streamlit as st
from conftest import ROOT
from sqlalchemy import inspect, select, text
from streamlit.testing.v1 import AppTest

from healthmon.cli import main as cli_main
from healthmon.config import Settings
from healthmon.errors import StorageError
from healthmon.services import accounts as auth
from healthmon.services.accounts import AuthError, PermissionDenied
from healthmon.services.tokens import authenticate, create_token, list_tokens, revoke_account_tokens, revoke_token
from healthmon.storage.db import (MIGRATIONS, current_revision, head_revision, make_engine, session_factory, transaction,
                                  upgrade)
from healthmon.storage.models import ApiToken, AuditEntry, Base

PASSWORDS = {"ada": "ada-password-1", "ann": "ann-password-1", "cli": "cli-password-1"}
ROLES = {"ada": "admin", "ann": "annotator", "cli": "clinician"}


@pytest.fixture()
def db(engine):
    upgrade(engine)
    factory = session_factory(engine)
    for name, role in ROLES.items():
        auth.add_user(factory, None, name, role, PASSWORDS[name])
    return factory


def _signed_in(db, name: str, tmp_path) -> auth.SignedIn:
    return auth.sign_in(db, name, PASSWORDS[name], Settings(data_dir=tmp_path))


def _audit(db) -> list[AuditEntry]:
    with transaction(db) as s:
        return list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_a_token_acts_as_its_account_and_only_its_hash_is_stored(db, engine):
    token, view = create_token(db, None, "cli", "epic-integration", days=30)
    assert token.startswith("hm_") and len(token) > 40 and view.prefix == token[:8]
    assert (view.account, view.name, view.created_by, view.status) == ("cli", "epic-integration", "cli", "active")
    assert timedelta(days=29, hours=23) < view.expires_at - view.created_at <= timedelta(days=30)
    user = authenticate(db, token)
    assert (user.name, user.role, user.token, user.expires_at) == ("cli", "clinician", token, view.expires_at)
    assert user.can("notes.predict") and not user.can("users.manage")

    with engine.connect() as conn:
        cells = [str(c) for row in conn.execute(text("SELECT * FROM api_tokens")) for c in row]
        cells += [str(c) for row in conn.execute(text("SELECT * FROM audit_log")) for c in row]
    assert not any(token in c for c in cells)  # the token itself is nowhere
    digest = hashlib.sha256(token.encode()).hexdigest()
    with transaction(db) as s:
        assert s.scalar(select(ApiToken.token_hash)) == digest
    entry = _audit(db)[-1]
    assert (entry.actor, entry.action) == ("cli", "token.create")
    assert not any(digest in str(v) for v in entry.after.values())  # nor its hash in the audit log
    assert [t.id for t in list_tokens(db, None)] == [view.id] and list_tokens(db, None, "ada") == []


def test_expired_and_revoked_tokens_are_refused_without_echoing_the_token(db):
    token, view = create_token(db, None, "cli", "short", days=1)
    later = view.expires_at + timedelta(seconds=1)
    with pytest.raises(AuthError) as expired:
        authenticate(db, token, now=later)
    assert "expired" in expired.value.found and token not in str(expired.value)
    assert view.status_at(later) == "expired"

    other, other_view = create_token(db, None, "cli", "second")
    assert authenticate(db, other).name == "cli"
    revoked = revoke_token(db, None, other_view.id)
    assert revoked.status == "revoked" and revoked.revoked_at is not None
    with pytest.raises(AuthError) as refused:
        authenticate(db, other)
    assert "revoked" in refused.value.found and other not in str(refused.value)
    again = revoke_token(db, None, other_view.id)  # a no-op: first revocation kept, no second entry
    assert again.revoked_at == revoked.revoked_at
    assert [e.action for e in _audit(db)].count("token.revoke") == 1

    for bad in (None, "", "hm_not-a-token", other[:-1], "ünïcode"):
        with pytest.raises(AuthError) as unknown:
            authenticate(db, bad)
        assert (bad or "") == "" or bad not in str(unknown.value)
    with pytest.raises(StorageError):
        revoke_token(db, None, 999)


def test_deactivation_stops_a_token_at_once_and_reactivation_restores_it_unless_expired(db):
    token, view = create_token(db, None, "cli", "integration", days=2)
    auth.set_active(db, None, "cli", False)
    with pytest.raises(AuthError) as refused:
        authenticate(db, token)
    assert "deactivated" in refused.value.found
    auth.set_active(db, None, "cli", True)
    assert authenticate(db, token).name == "cli"
    auth.set_active(db, None, "cli", False)
    auth.set_active(db, None, "cli", True)
    with pytest.raises(AuthError, match="expired"):
        authenticate(db, token, now=view.expires_at + timedelta(minutes=1))


def test_a_role_change_applies_to_the_next_request(db):
    token, _ = create_token(db, None, "cli", "integration")
    assert authenticate(db, token).role == "clinician"
    auth.set_role(db, None, "cli", "annotator")
    user = authenticate(db, token)
    assert user.role == "annotator" and not user.can("notes.predict")


def test_only_admins_manage_tokens_and_the_audit_names_them(db, tmp_path):
    ann, ada = _signed_in(db, "ann", tmp_path), _signed_in(db, "ada", tmp_path)
    token, view = create_token(db, None, "ann", "ann-script")
    for call in (lambda: create_token(db, ann, "ann", "mine"), lambda: list_tokens(db, ann),
                 lambda: revoke_token(db, ann, view.id), lambda: revoke_account_tokens(db, ann, "ann")):
        with pytest.raises(PermissionDenied):
            call()
    assert authenticate(db, token).name == "ann"  # nothing was revoked

    _, made = create_token(db, ada, "cli", "by-admin", days=0.5)
    assert made.created_by == "ada" and _audit(db)[-1].actor == "ada"
    assert revoke_account_tokens(db, ada, "ann") == 1 and revoke_account_tokens(db, ada, "ann") == 0
    assert _audit(db)[-1].actor == "ada" and _audit(db)[-1].action == "token.revoke"
    assert {t.name: t.status for t in list_tokens(db, ada)} == {"ann-script": "revoked", "by-admin": "active"}


@pytest.mark.parametrize("account, name, days, expected", [
    ("nobody", "x", 90, "a known user"),
    ("cli", "   ", 90, "a label"),
    ("cli", "x" * 121, 90, "at most 120"),
    ("cli", "x", 0, "lifetime"),
    ("cli", "x", 366.5, "lifetime"),
    ("cli", "x", float("nan"), "lifetime"),
])
def test_bad_requests_are_refused_with_what_to_do(db, account, name, days, expected):
    with pytest.raises(StorageError) as refused:
        create_token(db, None, account, name, days=days)
    assert expected in refused.value.expected and refused.value.fix
    assert list_tokens(db, None) == []


def test_a_deactivated_account_gets_no_new_token(db):
    auth.set_active(db, None, "cli", False)
    with pytest.raises(StorageError, match="deactivated"):
        create_token(db, None, "cli", "x")


def test_last_use_is_stamped_at_most_once_a_minute(db):
    token, view = create_token(db, None, "cli", "integration")
    start = view.created_at + timedelta(hours=1)
    for seconds, stamped in ((0, 0), (30, 0), (59, 0), (60, 60), (61, 60), (200, 200)):
        authenticate(db, token, now=start + timedelta(seconds=seconds))
        assert list_tokens(db, None)[0].last_used_at == start + timedelta(seconds=stamped)


def test_the_migration_creates_the_table_the_model_describes_and_downgrades(engine):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext

    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diffs if "api_tokens" in repr(d)] == []
    assert {i["name"] for i in inspect(engine).get_indexes("api_tokens")} >= {"ix_api_tokens_user_id"}
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0007")
    assert "api_tokens" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert "api_tokens" in inspect(engine).get_table_names()


def test_cli_creates_lists_and_revokes_tokens(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HEALTHMON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HEALTHMON_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("dr-kay-password\n"))
    assert cli_main(["users", "add", "dr-kay", "--role", "clinician", "--password-stdin"]) == 0
    capsys.readouterr()

    assert cli_main(["users", "token", "create", "dr-kay", "--name", "epic", "--days", "7"]) == 0
    out, err = capsys.readouterr()
    made = json.loads(out)
    assert set(made) == {"account", "token_id", "name", "expires_at"} and made["name"] == "epic"
    assert "(shown only this once)" in err
    token = err.strip().rsplit(" ", 1)[-1]
    assert token.startswith("hm_") and token not in out
    assert cli_main(["users", "token", "create", "dr-kay"]) == 0
    capsys.readouterr()

    assert cli_main(["users", "token", "list", "dr-kay"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(t["name"], t["status"]) for t in lines] == [("epic", "active"), ("api", "active")]
    assert not any("hash" in key for t in lines for key in t) and token[:8] == lines[0]["prefix"]

    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    factory = session_factory(engine)
    assert authenticate(factory, token).name == "dr-kay"
    assert cli_main(["users", "token", "revoke", "--id", str(made["token_id"])]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "revoked"
    with pytest.raises(AuthError):
        authenticate(factory, token)
    assert cli_main(["users", "token", "revoke", "dr-kay"]) == 0
    assert json.loads(capsys.readouterr().out) == {"account": "dr-kay", "revoked": 1}
    assert {t.status for t in list_tokens(factory, None)} == {"revoked"}

    assert cli_main(["users", "token", "create", "nobody"]) == 2
    assert "a known user" in capsys.readouterr().err
    engine.dispose()


def test_admin_page_creates_a_token_shows_it_once_and_revokes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HEALTHMON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HEALTHMON_WORKER", "external")
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    engine = make_engine(settings=Settings())
    upgrade(engine)
    factory = session_factory(engine)
    for name, role in ROLES.items():
        auth.add_user(factory, None, name, role, PASSWORDS[name])
    try:
        at = AppTest.from_file(str(ROOT / "pages" / "6_Admin.py"), default_timeout=60)
        at.session_state["auth_token"] = auth.sign_in(factory, "ada", PASSWORDS["ada"], Settings()).token
        at.run()
        assert not at.exception
        [w for w in at.selectbox if w.label == "Account"][0].select("cli")
        [w for w in at.text_input if w.label.startswith("Label")][0].input("epic-integration")
        [b for b in at.button if b.label == "Create token"][0].click().run()
        assert not at.exception
        shown = at.code[0].value
        assert shown.startswith("hm_") and authenticate(factory, shown).name == "cli"
        assert any("will not be shown again" in w.value for w in at.warning)
        table = [d.value for d in at.dataframe if "prefix" in d.value.columns][0]
        assert table[["account", "name", "prefix", "status"]].values.tolist() == [
            ["cli", "epic-integration", shown[:8], "active"]]

        at.run()  # the next rerun no longer shows the token
        assert not at.code
        [b for b in at.button if b.label == "Revoke token"][0].click().run()
        assert not at.exception
        table = [d.value for d in at.dataframe if "prefix" in d.value.columns][0]
        assert table["status"].tolist() == ["revoked"]
        with pytest.raises(AuthError):
            authenticate(factory, shown)
    finally:
        engine.dispose()
        st.cache_resource.clear()
