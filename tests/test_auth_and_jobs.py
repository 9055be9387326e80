"""Sign-in, sessions, roles and background jobs, on real SQLite and (marked) PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from healthmon.services import accounts as auth
from healthmon.services.accounts import AuthError, PermissionDenied, SignedIn, check_session, sign_in, sign_out
from healthmon.config import Settings
from healthmon.services.jobs import PredictJob, RetrainJob, cancel, enqueue, get_job, recent_jobs
from healthmon.services.notes import submit_for_scoring
from healthmon.services.worker import Worker
from healthmon.model.classifier import Classifier
from healthmon.storage.db import session_factory, transaction, upgrade
from healthmon.storage.models import AuditEntry, AuthSession, Job, User, utcnow
from healthmon.storage.passwords import hash_password, needs_rehash, verify_password
from healthmon.errors import StorageError
from healthmon.storage.repository import create_user
from healthmon.training.args import TrainArgs
from healthmon.training.trainer import train
from healthmon.types import Note

PASSWORDS = {"ada": "ada-password-1", "ann": "ann-password-1", "cli": "cli-password-1"}


@pytest.fixture()
def db(engine):
    upgrade(engine)
    factory = session_factory(engine)
    auth.add_user(factory, None, "ada", "admin", PASSWORDS["ada"])
    auth.add_user(factory, None, "ann", "annotator", PASSWORDS["ann"])
    auth.add_user(factory, None, "cli", "clinician", PASSWORDS["cli"])
    return factory


@pytest.fixture()
def conf(tmp_path):
    return Settings(data_dir=tmp_path, session_idle_minutes=30, session_max_hours=12, max_failed_logins=3,
                    lockout_minutes=5)


def _actions(db) -> list[str]:
    with transaction(db) as s:
        return list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def test_passwords_are_salted_argon2_and_old_scrypt_hashes_still_verify():
    one, two = hash_password("same-password"), hash_password("same-password")
    assert one.startswith("$argon2id$") and one != two  # a fresh salt each time
    assert verify_password("same-password", one) and not verify_password("other-password", one)
    import hashlib

    salt = bytes(range(16))
    legacy = f"scrypt${salt.hex()}${hashlib.scrypt(b'old-password', salt=salt, n=2**14, r=8, p=1).hex()}"
    assert verify_password("old-password", legacy) and not verify_password("nope", legacy)
    assert needs_rehash(legacy) and not needs_rehash(one)
    assert not verify_password("x", "garbage")


def test_sign_in_checks_the_password_audits_and_creates_a_session(db, conf):
    user = sign_in(db, "ada", PASSWORDS["ada"], conf)
    assert (user.name, user.role) == ("ada", "admin") and len(user.token) >= 40
    assert check_session(db, user.token, conf).name == "ada"
    with transaction(db) as s:
        stored = s.scalar(select(AuthSession))
        assert stored.token_hash != user.token  # only a hash of the token is kept
    with pytest.raises(AuthError) as wrong:
        sign_in(db, "ada", "not-the-password", conf)
    with pytest.raises(AuthError) as unknown:
        sign_in(db, "nobody", "whatever-password", conf)
    assert str(wrong.value) == str(unknown.value)  # the form does not reveal which names exist
    assert _actions(db)[-3:] == ["auth.sign_in", "auth.refused", "auth.refused"]


def test_repeated_wrong_passwords_lock_the_account_for_a_while(db, conf):
    for _ in range(conf.max_failed_logins):
        with pytest.raises(AuthError):
            sign_in(db, "ann", "wrong-password", conf)
    with pytest.raises(AuthError) as locked:
        sign_in(db, "ann", PASSWORDS["ann"], conf)  # even the right password, while locked
    assert "locked" in str(locked.value)
    with transaction(db) as s:
        reasons = [e.after["reason"] for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "auth.refused"))]
    assert reasons[-2:] == ["wrong password; account locked", "locked"]
    later = utcnow() + timedelta(minutes=conf.lockout_minutes + 1)
    assert sign_in(db, "ann", PASSWORDS["ann"], conf, now=later).name == "ann"


def test_parallel_wrong_guesses_are_all_counted_and_lock_the_account(db, conf):
    barrier = threading.Barrier(6)

    def guess():
        barrier.wait()
        with pytest.raises(AuthError):
            sign_in(db, "cli", "wrong-password", conf)

    threads = [threading.Thread(target=guess) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with transaction(db) as s:
        user = s.scalar(select(User).where(User.name == "cli"))
        assert user.locked_until is not None  # 6 simultaneous guesses > the limit of 3
    with pytest.raises(AuthError):
        sign_in(db, "cli", PASSWORDS["cli"], conf)


def test_refusals_do_not_reveal_whether_a_name_exists_or_log_what_was_typed(db, conf):
    auth.set_active(db, None, "ann", False)
    messages = set()
    for name, password in (("nobody", "x" * 12), ("ann", PASSWORDS["ann"]), ("cli", "wrong-password")):
        with pytest.raises(AuthError) as refused:
            sign_in(db, name, password, conf)
        messages.add(str(refused.value))
    assert len(messages) == 1  # unknown, deactivated and wrong password read the same
    with pytest.raises(AuthError):
        sign_in(db, "my-secret-password", "x", conf)  # a password typed into the name box
    assert "my-secret-password" not in " ".join(e["actor"] for e in auth.audit_log(db, sign_in(db, "ada", PASSWORDS["ada"], conf)))


def test_sessions_expire_when_idle_at_their_limit_and_on_sign_out(db, conf):
    start = utcnow()
    user = sign_in(db, "cli", PASSWORDS["cli"], conf, now=start)
    # Activity keeps an idle session alive ...
    assert check_session(db, user.token, conf, now=start + timedelta(minutes=20)).name == "cli"
    assert check_session(db, user.token, conf, now=start + timedelta(minutes=45)).name == "cli"
    # ... until it is left idle too long.
    with pytest.raises(AuthError, match="expired"):
        check_session(db, user.token, conf, now=start + timedelta(minutes=80))
    # The absolute limit holds even for a session in constant use.
    other = sign_in(db, "cli", PASSWORDS["cli"], conf, now=start)
    moment = start
    while moment < start + timedelta(hours=conf.session_max_hours, minutes=-10):
        moment += timedelta(minutes=20)
        check_session(db, other.token, conf, now=min(moment, start + timedelta(hours=conf.session_max_hours, minutes=-1)))
    with pytest.raises(AuthError, match="expired"):
        check_session(db, other.token, conf, now=start + timedelta(hours=conf.session_max_hours))
    third = sign_in(db, "cli", PASSWORDS["cli"], conf)
    sign_out(db, third.token)
    with pytest.raises(AuthError, match="signed out"):
        check_session(db, third.token, conf)
    with pytest.raises(AuthError):
        check_session(db, "forged-token", conf)


def test_roles_gate_every_action(db, conf):
    ann = sign_in(db, "ann", PASSWORDS["ann"], conf)
    cli = sign_in(db, "cli", PASSWORDS["cli"], conf)
    ada = sign_in(db, "ada", PASSWORDS["ada"], conf)
    assert not ann.can("models.promote") and not ann.can("notes.predict") and ann.can("cases.review")
    assert cli.can("notes.predict") and not cli.can("users.manage")
    assert {"users.manage", "models.promote", "notes.predict"} <= set(auth.PERMISSIONS)
    assert all(ada.can(p) for p in auth.PERMISSIONS)
    with pytest.raises(PermissionDenied, match="users manage"):
        auth.add_user(db, cli, "eve", "admin", "eve-password-1")
    with pytest.raises(PermissionDenied):
        enqueue(db, PredictJob("x"), ann)
    with pytest.raises(PermissionDenied):
        enqueue(db, RetrainJob(), cli)
    from healthmon.services.versions import set_active

    with pytest.raises(PermissionDenied):
        set_active(db, "anything", actor=ann)
    with pytest.raises(PermissionDenied):
        auth.audit_log(db, cli)
    assert auth.audit_log(db, ada)[0]["action"] == "auth.sign_in"


def test_role_changes_and_deactivation_apply_to_open_sessions_and_keep_an_admin(db, conf):
    ada = sign_in(db, "ada", PASSWORDS["ada"], conf)
    ann = sign_in(db, "ann", PASSWORDS["ann"], conf)
    auth.set_role(db, ada, "ann", "clinician")
    assert check_session(db, ann.token, conf).role == "clinician"  # at the next click, not the next sign-in
    auth.set_active(db, ada, "ann", False)
    with pytest.raises(AuthError):
        check_session(db, ann.token, conf)
    with pytest.raises(AuthError):
        sign_in(db, "ann", PASSWORDS["ann"], conf)
    with pytest.raises(StorageError, match="only one"):
        auth.set_role(db, ada, "ada", "annotator")
    with pytest.raises(StorageError, match="at least 10 characters"):
        auth.set_password(db, ada, "cli", "short")
    cli = sign_in(db, "cli", PASSWORDS["cli"], conf)
    auth.set_password(db, ada, "cli", "a-new-long-password")
    with pytest.raises(AuthError):
        check_session(db, cli.token, conf)  # a reset signs the account out everywhere
    cli = sign_in(db, "cli", "a-new-long-password", conf)
    # Changing one's own password needs the current one, and keeps this session signed in.
    with pytest.raises(AuthError, match="current password"):
        auth.set_password(db, cli, "cli", "another-long-password", current_password="wrong")
    auth.set_password(db, cli, "cli", "another-long-password", current_password="a-new-long-password")
    assert check_session(db, cli.token, conf).name == "cli"
    with pytest.raises(PermissionDenied):
        auth.set_password(db, cli, "ann", "taking-over-ann")


def _signed(db, conf, name) -> SignedIn:
    return sign_in(db, name, PASSWORDS[name], conf)


def test_a_predict_job_scores_notes_in_the_background_and_stores_cases(db, conf, settings, notes):
    version = train(notes, TrainArgs(mode="head", max_steps=2), out_dir=settings.data_dir / "v1",
                    settings=settings, progress=False).version_dir
    cli = _signed(db, conf, "cli")
    texts = [Note(text=f"note {i}: polyuria, glucose 240 mg/dL", note_id=f"n{i}") for i in range(40)]
    job_id = submit_for_scoring(db, cli, texts, version)
    assert get_job(db, job_id).status == "queued"
    loaded = {}

    def load(folder):
        loaded.setdefault(folder, Classifier.from_pretrained(folder, settings=settings))
        return loaded[folder]

    worker = Worker(db, settings, load)
    assert worker.run_once() == job_id
    job = get_job(db, job_id)
    assert job.status == "succeeded" and job.progress == 1.0, job.error
    assert job.result["scored"] == 40 and len(job.result["note_ids"]) == 40
    from healthmon.services.cases import predictions_table_rows

    rows = predictions_table_rows(db, job.result["note_ids"])
    assert [r["note"] for r in rows] == [t.note_id for t in texts]
    assert all(abs(sum(v for k, v in r.items() if k.startswith("P(")) - 1) < 1e-4 for r in rows)
    assert worker.run_once() is None  # nothing left
    assert recent_jobs(db, kinds=("predict",))[0].id == job_id


def test_only_one_of_two_workers_claims_a_job(db, conf, settings):
    cli = _signed(db, conf, "cli")
    job_id = enqueue(db, PredictJob("unused"), cli)
    workers = [Worker(db, settings, lambda f: None, name=f"w{i}") for i in range(2)]
    claims: list[int | None] = []
    barrier = threading.Barrier(2)

    def claim(worker):
        barrier.wait()
        claims.append(worker.claim())

    threads = [threading.Thread(target=claim, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claims, key=lambda c: c is None) == [job_id, None]


def _version_folder(tmp_path):
    # Enough for submit_for_scoring's check; these tests' workers never load it.
    folder = tmp_path / "v1"
    folder.mkdir()
    (folder / "card.json").write_text("{}")
    return str(folder)


def test_failures_cancellation_and_dead_workers_are_recorded(db, conf, settings, tmp_path):
    from healthmon.storage.models import NoteRow

    cli = _signed(db, conf, "cli")
    worker = Worker(db, settings, lambda folder: (_ for _ in ()).throw(FileNotFoundError(folder)))
    version = _version_folder(tmp_path)
    bad = submit_for_scoring(db, cli, [Note(text="x", note_id="1")], version)
    worker.run_once()
    failed = get_job(db, bad)
    assert failed.status == "failed" and "internal error" in failed.error and version in failed.error
    with transaction(db) as s:  # the failed job's notes were never scored: their text is not kept
        assert s.scalar(select(func.count()).select_from(NoteRow)) == 0

    queued = enqueue(db, PredictJob("x"), cli)
    cancel(db, queued, cli)
    assert get_job(db, queued).status == "cancelled" and worker.run_once() is None

    ann = _signed(db, conf, "ann")
    other = enqueue(db, PredictJob("x"), cli)
    with pytest.raises(PermissionDenied):
        cancel(db, other, ann)  # only its owner or an admin

    # A worker that died mid-job: its heartbeat stops, the next worker marks the job failed.
    stale = Worker(db, settings.model_copy(update={"job_stale_seconds": 1.0}), lambda f: None)
    assert stale.claim() == other
    with transaction(db) as s:
        s.get(Job, other).heartbeat_at = utcnow() - timedelta(seconds=30)
    assert stale.fail_stale() == 1
    assert "restarted" in get_job(db, other).error


def test_a_running_job_stops_at_its_next_progress_report_when_cancelled(db, conf, settings):
    from healthmon.services.worker import JobCancelled, JobContext

    cli = _signed(db, conf, "cli")
    job_id = enqueue(db, PredictJob("x"), cli)
    Worker(db, settings, lambda f: None).claim()
    cancel(db, job_id, cli)
    ctx = JobContext(db, job_id, settings, lambda f: None, "cli")
    with pytest.raises(JobCancelled):
        ctx.progress(0.5, "half way", force=True)
    assert get_job(db, job_id).progress == 0.5


def test_the_demo_account_is_created_once_and_only_while_nobody_can_sign_in(engine):
    from healthmon.services.accounts import ensure_demo_account

    upgrade(engine)
    factory = session_factory(engine)
    with transaction(factory) as s:
        create_user(s, "named-reviewer", "annotator")  # no password: cannot sign in
    name, password = ensure_demo_account(factory)
    assert name.startswith("demo-admin-") and len(name) == len("demo-admin-") + 6  # not a guessable "demo"
    assert ensure_demo_account(factory) is None
    with transaction(factory) as s:
        assert s.scalar(select(User).where(User.name == name)).role == "admin"
    assert sign_in(factory, name, password, Settings()).role == "admin"


def test_a_live_job_keeps_its_heartbeat_and_is_not_taken_for_dead(db, conf, settings, monkeypatch):
    from dataclasses import dataclass
    from typing import ClassVar

    from healthmon.services import jobs, worker

    @dataclass(frozen=True)
    class Nap(jobs.JobPayload):
        kind: ClassVar[str] = "nap"
        permission: ClassVar[str] = "notes.predict"

    def slow(ctx, job):
        time.sleep(3.5)  # no progress reports: only the heartbeat shows it is alive
        return {"slept": True}

    monkeypatch.setitem(jobs.KINDS, "nap", Nap)
    monkeypatch.setitem(worker.HANDLERS, "nap", slow)
    quick = settings.model_copy(update={"job_stale_seconds": 2.0})
    cli = _signed(db, conf, "cli")
    job_id = enqueue(db, Nap(), cli)
    runner = threading.Thread(target=Worker(db, quick, lambda f: None).run_once)
    runner.start()
    swept = 0
    sweeper = Worker(db, quick, lambda f: None)
    while runner.is_alive():
        time.sleep(0.5)
        swept += sweeper.fail_stale()
    runner.join()
    assert swept == 0 and get_job(db, job_id).status == "succeeded"


def test_a_retrain_job_reports_the_run_the_service_returned(db, conf, settings, monkeypatch, tmp_path):
    # The retrain itself is tested in test_continual; here only what the worker makes of its result
    # (it once read an attribute the result does not have, so every retrain job failed at the end).
    from healthmon.services import worker
    from healthmon.services.retrain import RetrainResult

    seen = {}

    def fake_retrain(factory, **kwargs):
        seen.update(kwargs)
        return RetrainResult(7, tmp_path / "v-child", False, "held-out accuracy did not improve",
                             {"regression_active": 0.9, "regression_candidate": 0.89})

    monkeypatch.setattr(worker, "retrain", fake_retrain)
    ada = _signed(db, conf, "ada")
    job_id = enqueue(db, RetrainJob(train_args={"epochs": 2}, margin=0.02), ada)
    assert Worker(db, settings, lambda f: None).run_once() == job_id
    job = get_job(db, job_id)
    assert job.status == "succeeded", job.error
    assert job.result == {"version": "v-child", "promoted": False, "reason": "held-out accuracy did not improve",
                          "scores": {"regression_active": 0.9, "regression_candidate": 0.89}, "run_id": 7}
    assert seen["args"] == TrainArgs(epochs=2) and seen["margin"] == 0.02 and seen["actor"] == "ada"


def test_job_payloads_round_trip_and_name_unknown_keys():
    from healthmon.errors import ConfigError
    from healthmon.services.jobs import ExplainJob, FinetuneJob, payload_of

    for job in (PredictJob("/models/v1", (3, 1, 2)), ExplainJob((5,), target="diabetes"),
                RetrainJob(train_args={"mode": "head"}, replay=0), FinetuneJob("/up/x.csv", {"epochs": 1.0})):
        stored = json.loads(json.dumps(job.to_dict()))  # as the jobs table keeps it
        assert payload_of(job.kind, stored) == job
    with pytest.raises(ConfigError, match="unknown field.*notes"):
        payload_of("predict", {"version_dir": "v", "notes": [{"text": "a note's text"}]})
    with pytest.raises(ConfigError, match="unknown field.*epoch\\b"):
        RetrainJob(train_args={"epoch": 3})  # a misspelt knob is refused when queued, not an hour later
    with pytest.raises(ConfigError, match="missing"):
        payload_of("finetune", {"train_args": {}})


def test_notes_are_stored_once_and_their_job_carries_ids_not_text(db, conf, tmp_path):
    from healthmon.errors import ModelError
    from healthmon.storage.models import NoteRow

    cli, ann = _signed(db, conf, "cli"), _signed(db, conf, "ann")
    version = _version_folder(tmp_path)
    notes = [Note(text="Polyuria, HbA1c 9.1 %", note_id="a", patient_id="P-1"), Note(text="BP 150/95", note_id="b")]
    first = submit_for_scoring(db, cli, notes, version)
    again = submit_for_scoring(db, cli, notes, version)
    with pytest.raises(PermissionDenied):
        submit_for_scoring(db, ann, [Note(text="an annotator may not score notes", note_id="c")], version)
    with pytest.raises(ModelError, match="no card.json"):
        submit_for_scoring(db, cli, [Note(text="no model to score with", note_id="d")], None)
    with transaction(db) as s:
        stored = {row.external_id: row.id for row in s.scalars(select(NoteRow))}
        first_args, again_args = s.get(Job, first).args, s.get(Job, again).args
    assert sorted(stored) == ["a", "b"]  # once each, and nothing of the refused jobs
    assert first_args == again_args == {"version_dir": version, "note_ids": [stored["a"], stored["b"]]}
    cancel(db, first, cli)  # the other job still waits on the same notes: they stay
    with transaction(db) as s:
        assert s.scalar(select(func.count()).select_from(NoteRow)) == 2
    cancel(db, again, cli)
    with transaction(db) as s:
        assert s.scalar(select(func.count()).select_from(NoteRow)) == 0
