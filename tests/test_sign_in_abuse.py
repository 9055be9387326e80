"""Sign-in abuse (issue 31): locks checked before hashing, escalating locks, per-address counting,
password strength, the demo admin's name, and permissions read from the database."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import test_pages
from sqlalchemy import func, select

from healthmon.cli import main as cli_main
from healthmon.config import Settings
from healthmon.errors import StorageError
from healthmon.services import accounts as auth
from healthmon.services.accounts import AuthError, PermissionDenied, SignedIn, sign_in
from healthmon.storage.db import make_engine, session_factory, transaction, upgrade
from healthmon.storage.models import AuditEntry, SignInFailure, User, utcnow

dash = test_pages.dash  # the dashboard fixture: a served tiny version, its database and one user per role
PASSWORDS = {"ada": "ada-larch-window-7", "root": "root-pebble-canyon-3", "ann": "ann-marble-heron-5",
             "cli": "cli-copper-meadow-2"}


@pytest.fixture()
def db(engine):
    upgrade(engine)
    factory = session_factory(engine)
    for name, role in (("ada", "admin"), ("root", "admin"), ("ann", "annotator"), ("cli", "clinician")):
        auth.add_user(factory, None, name, role, PASSWORDS[name])
    return factory


@pytest.fixture()
def conf(tmp_path):
    return Settings(data_dir=tmp_path, max_failed_logins=5, lockout_minutes=5, lockout_second_minutes=30,
                    max_failed_logins_per_address=20, failed_login_window_minutes=15)


@pytest.fixture()
def hashes(monkeypatch):
    """Every stored hash verify_password is asked to check during sign-in, in order."""
    seen: list[str] = []
    real = auth.verify_password

    def recording(password: str, stored: str) -> bool:
        seen.append(stored)
        return real(password, stored)

    monkeypatch.setattr(auth, "verify_password", recording)
    return seen


def _stored_hash(db, name: str) -> str:
    with transaction(db) as s:
        return s.scalar(select(User.password_hash).where(User.name == name))


def _fail(db, conf, name: str, times: int, *, now=None, address=None) -> None:
    where = {"address": address} if address is not None else {}
    for _ in range(times):
        with pytest.raises(AuthError):
            sign_in(db, name, "not-the-password-at-all", conf, now=now, **where)


def _refusals(db) -> list[dict]:
    with transaction(db) as s:
        return [e.after for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "auth.refused")
                                           .order_by(AuditEntry.id))]


def test_a_locked_or_deactivated_account_is_refused_before_its_hash_is_checked_with_the_same_work(db, conf, hashes):
    real = _stored_hash(db, "ann")
    _fail(db, conf, "ann", conf.max_failed_logins)
    assert hashes == [real] * conf.max_failed_logins  # wrong passwords: checked against the account's hash
    hashes.clear()
    with pytest.raises(AuthError) as locked:
        sign_in(db, "ann", PASSWORDS["ann"], conf)  # the right password, while locked
    # One hash computed, as for any refusal, but against the dummy: a guess during a lock
    # learns nothing, and the delay does not tell the account is locked.
    assert hashes == [auth._DUMMY_HASH] and real not in hashes
    auth.set_active(db, None, "cli", False)
    hashes.clear()
    with pytest.raises(AuthError) as deactivated:
        sign_in(db, "cli", PASSWORDS["cli"], conf)
    assert hashes == [auth._DUMMY_HASH]
    hashes.clear()
    with pytest.raises(AuthError) as unknown:
        sign_in(db, "nobody", "whatever-password", conf)
    assert hashes == [auth._DUMMY_HASH]
    assert str(locked.value) == str(deactivated.value) == str(unknown.value)  # one refusal for all
    assert [r["reason"] for r in _refusals(db)[-3:]] == ["locked", "deactivated", "unknown user"]


def test_locks_escalate_from_5_to_30_minutes_then_hold_until_an_admin_unlocks(db, conf, tmp_path, monkeypatch, capsys):
    start = utcnow()
    _fail(db, conf, "ann", 5, now=start)
    with pytest.raises(AuthError):
        sign_in(db, "ann", PASSWORDS["ann"], conf, now=start + timedelta(minutes=4))
    # A success after the first lock starts the escalation over: the next lock is 5 minutes again.
    assert sign_in(db, "ann", PASSWORDS["ann"], conf, now=start + timedelta(minutes=6)).name == "ann"
    _fail(db, conf, "ann", 5, now=start + timedelta(minutes=7))
    assert sign_in(db, "ann", PASSWORDS["ann"], conf, now=start + timedelta(minutes=13)).name == "ann"

    t1 = start + timedelta(minutes=20)
    _fail(db, conf, "ann", 5, now=t1)  # first lock: 5 minutes
    t2 = t1 + timedelta(minutes=6)
    _fail(db, conf, "ann", 5, now=t2)  # the next round, with no success between: 30 minutes
    for minutes in (10, 29):
        with pytest.raises(AuthError):
            sign_in(db, "ann", PASSWORDS["ann"], conf, now=t2 + timedelta(minutes=minutes))
    t3 = t2 + timedelta(minutes=31)
    _fail(db, conf, "ann", 5, now=t3)  # the third round: until an admin unlocks it
    with pytest.raises(AuthError):
        sign_in(db, "ann", PASSWORDS["ann"], conf, now=t3 + timedelta(days=30))
    assert [r["reason"] for r in _refusals(db)][-2:] == [
        "wrong password; account locked until an admin unlocks it", "locked"]
    listed = {row["name"]: row["locked"] for row in auth.accounts(db, None)}
    assert listed["ann"] == "until an admin unlocks it" and listed["cli"] == ""

    ada = sign_in(db, "ada", PASSWORDS["ada"], conf)
    with pytest.raises(PermissionDenied):
        auth.unlock(db, sign_in(db, "cli", PASSWORDS["cli"], conf), "ann")
    auth.unlock(db, ada, "ann")
    assert sign_in(db, "ann", PASSWORDS["ann"], conf, now=t3 + timedelta(days=30)).name == "ann"
    with transaction(db) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "user.unlock")).one()
    assert entry.actor == "ada" and entry.before["lockout_level"] == 3

    # The command line does the same: `python -m healthmon users unlock NAME`.
    _fail(db, conf, "cli", 5)
    url = str(db.kw["bind"].url.render_as_string(hide_password=False))
    monkeypatch.setenv("HEALTHMON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HEALTHMON_DATABASE_URL", url)
    assert cli_main(["users", "unlock", "cli"]) == 0
    assert '"done": "unlock"' in capsys.readouterr().out
    assert sign_in(db, "cli", PASSWORDS["cli"], conf).name == "cli"


def test_an_address_with_too_many_failures_is_refused_before_any_hash_across_processes(db, conf, hashes):
    conf = conf.model_copy(update={"max_failed_logins_per_address": 4})
    start = utcnow()
    guesser = "203.0.113.9"
    for name in ("ann", "cli", "nobody", "root"):  # one guess each: no account reaches its own limit
        with pytest.raises(AuthError):
            sign_in(db, name, "summer-2024-guess", conf, now=start, address=guesser)
    # A second server process (its own engine and factory on the same database) sees the same count.
    other_engine = make_engine(db.kw["bind"].url)
    other = session_factory(other_engine)
    try:
        hashes.clear()
        with pytest.raises(AuthError, match="too many attempts from this address") as refused:
            sign_in(other, "ada", PASSWORDS["ada"], conf, now=start + timedelta(minutes=1), address=guesser)
        assert hashes == []  # refused before any password was hashed, even the right one
        assert "try later" in str(refused.value)
        # Another address is not held up, and the account itself is not locked.
        assert sign_in(other, "ada", PASSWORDS["ada"], conf, now=start + timedelta(minutes=1),
                       address="198.51.100.4").name == "ada"
    finally:
        other_engine.dispose()
    refusals = _refusals(db)
    assert refusals[-1] == {"reason": "too many attempts from this address", "address": guesser}
    assert refusals[0] == {"reason": "wrong password", "address": guesser}  # today's shape, plus the address
    # Once the failures leave the window the address may try again, and the old rows are deleted.
    later = start + timedelta(minutes=conf.failed_login_window_minutes + 1)
    assert sign_in(db, "ada", PASSWORDS["ada"], conf, now=later, address=guesser).name == "ada"
    with transaction(db) as s:
        assert s.scalar(select(func.count()).select_from(SignInFailure)) == 0


def test_weak_passwords_are_refused_by_zxcvbn_and_by_the_common_list_without_echoing_them(db):
    with pytest.raises(StorageError, match="strength [0-2] of 4") as weak:
        auth.add_user(db, None, "margaret", "clinician", "margaret2024")
    assert "margaret2024" not in str(weak.value) and "passphrase" in weak.value.fix
    # The user name counts as a word a guesser tries first: fine for one account, not for another.
    with pytest.raises(StorageError, match="hard to guess"):
        auth.add_user(db, None, "zorblaxian", "clinician", "zorblaxian-99")
    auth.add_user(db, None, "dr-pike", "clinician", "zorblaxian-99")
    with pytest.raises(StorageError, match="hard to guess"):
        auth.set_password(db, None, "dr-pike", "dr-pike-2024")
    # The bundled list of common passwords, case-insensitively.
    for common in ("QwertyUiop", "PASSWORD123", "1q2w3e4r5t"):
        with pytest.raises(StorageError, match="10,000 most common passwords") as listed:
            auth.add_user(db, None, "dr-lee", "clinician", common)
        assert common not in str(listed.value)
    assert "password123" in _common_list()
    auth.add_user(db, None, "dr-lee", "clinician", "violet kettle rides the ferry")


def _common_list() -> frozenset[str]:
    from healthmon.storage.password_policy import COMMON_PASSWORDS, common_passwords

    assert COMMON_PASSWORDS.read_text(encoding="utf-8").startswith("# ")  # says where the list comes from
    assert len(common_passwords()) == 10_000
    return common_passwords()


def test_the_demo_admin_gets_a_random_name(engine, tmp_path):
    upgrade(engine)
    factory = session_factory(engine)
    name, password = auth.ensure_demo_account(factory)
    assert re.fullmatch(r"demo-admin-[a-z0-9]{6}", name)
    assert sign_in(factory, name, password, Settings(data_dir=tmp_path)).role == "admin"
    with pytest.raises(AuthError):
        sign_in(factory, "demo", password, Settings(data_dir=tmp_path))
    other = make_engine(f"sqlite:///{tmp_path / 'second.db'}")
    try:
        upgrade(other)
        assert auth.ensure_demo_account(session_factory(other))[0] != name  # not one fixed name either
    finally:
        other.dispose()


def test_require_reads_the_role_and_state_from_the_database_not_the_session(db, conf):
    ada = sign_in(db, "ada", PASSWORDS["ada"], conf)  # signed in as admin ...
    root = sign_in(db, "root", PASSWORDS["root"], conf)
    auth.set_role(db, root, "ada", "annotator")  # ... and demoted since
    assert ada.role == "admin"  # the object still says admin
    with pytest.raises(PermissionDenied, match="signed in as annotator"):
        auth.add_user(db, ada, "eve", "clinician", "eve-orchid-lantern-4")
    with pytest.raises(PermissionDenied):
        auth.accounts(db, ada)
    from healthmon.services.jobs import PredictJob, enqueue
    from healthmon.services.versions import set_active

    with pytest.raises(PermissionDenied):
        set_active(db, "any-version", actor=ada)
    with pytest.raises(PermissionDenied):
        enqueue(db, PredictJob("x"), ada)
    fresh = auth.require(db, ada, "cases.review")
    assert (fresh.name, fresh.role, fresh.token) == ("ada", "annotator", ada.token)
    # A role granted since applies at once too.
    cli = sign_in(db, "cli", PASSWORDS["cli"], conf)
    auth.set_role(db, root, "cli", "admin")
    auth.add_user(db, cli, "eve", "clinician", "eve-orchid-lantern-4")
    # A deactivated account and a SignedIn for no account are refused outright.
    auth.set_active(db, root, "cli", False)
    with pytest.raises(AuthError, match="deactivated or gone"):
        auth.require(db, cli, "cases.view")
    forged = SignedIn(999, "mallory", "admin", "forged", ada.expires_at)
    with pytest.raises(AuthError):
        auth.add_user(db, forged, "trudy", "admin", "trudy-garnet-harbour-8")
    with pytest.raises(AuthError, match="no session"):
        auth.require(db, None, "cases.view")


def test_the_admin_page_lists_locked_accounts_and_unlocks_them(dash):
    _fail(dash.factory, dash.settings, "ann", dash.settings.max_failed_logins)
    at = dash.page("Admin", "ada")
    assert not at.exception
    assert at.dataframe[0].value.set_index("name").loc["ann", "locked"].startswith("until ")
    assert at.selectbox(key="unlock_target").value == "ann"
    next(b for b in at.button if b.label == "Unlock").click().run()
    assert not at.exception and "ann is unlocked" in test_pages._texts(at, "success")
    assert sign_in(dash.factory, "ann", test_pages.PASSWORDS["ann"], dash.settings).name == "ann"
    assert not [b for b in dash.page("Admin", "ada").button if b.label == "Unlock"]  # nobody locked now
