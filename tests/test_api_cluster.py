"""Several machines: two ``serve`` processes and two ``worker`` processes over one PostgreSQL.

Everything a second server needs is in the database; each process keeps only caches
(docs/deployment.md, "Several servers behind a load balancer"). This test starts the four
processes as a deployment would and checks that they behave as one service:

- 40 predict jobs, queued with ``submit_for_scoring`` from the test process (there is no API
  route that queues jobs; the Notes page calls the same service), are each run exactly once:
  one worker name and ``succeeded`` on every job, one prediction row per note, and both
  workers took some.
- Both servers answer alike: the same probabilities for the same text, a case stored through
  one is read through the other, the same recent-cases list, both ready, and a token revoked
  through the service is refused by both at once.

Each process has its own ``HEALTHMON_DATA_DIR`` (as on separate machines), so nothing can pass
through a local file: only the database and the model version folder, named by the same
absolute path everywhere (as shared storage would), are common. That is enough for predict
jobs; fine-tune uploads and trained versions need a shared data folder (docs/deployment.md).
The schema is migrated once by the test before the processes start, as ``python -m healthmon
db upgrade`` would be: two processes migrating an empty database at once race.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from api_support import trained_version
from conftest import POSTGRES_URL, ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.skipif(not POSTGRES_URL, reason="no PostgreSQL server: set HEALTHMON_TEST_POSTGRES_URL "
                                                          "(.ci/run starts one)")]

JOBS, NOTES_PER_JOB = 40, 3
START_TIMEOUT, JOBS_TIMEOUT = 150, 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(method: str, url: str, token: str | None = None, body: dict | None = None) -> tuple[int, dict | str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


class Process:
    """One child process with its stderr in a file (read back on failure)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.log = name, log_dir / f"{name}.stderr"
        self._file = self.log.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "healthmon", *args], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=self._file)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def alive(self) -> None:
        code = self.proc.poll()
        assert code is None, f"{self.name} exited with {code}:\n{self.tail()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self._file.close()


def _fresh_database(url: str) -> None:
    from sqlalchemy import text

    from healthmon.storage.db import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def _wait(what: str, ready: Callable[[], bool], processes: list[Process], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in processes:
            p.alive()
        if ready():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_two_servers_and_two_workers_act_as_one_service(settings, notes, tmp_path):
    from sqlalchemy import func, select

    from healthmon.services import accounts, tokens
    from healthmon.services.database import connect
    from healthmon.services.notes import submit_for_scoring
    from healthmon.storage.models import Job, PredictionRow
    from healthmon.types import Note

    version = trained_version(settings, notes).resolve()
    _fresh_database(POSTGRES_URL)
    factory = connect(settings.model_copy(update={"database_url": POSTGRES_URL}))  # migrates, once
    accounts.add_user(factory, None, "cli", "clinician", "cli-password-1")
    token, _ = tokens.create_token(factory, None, "cli", "cluster-test")
    doomed, doomed_view = tokens.create_token(factory, None, "cli", "to-revoke")

    base_env = {**os.environ, "HEALTHMON_DATABASE_URL": POSTGRES_URL, "HEALTHMON_WORKER": "external",
                "HEALTHMON_ACTIVE_MODEL": str(version), "HEALTHMON_BASE_MODEL": str(settings.base_model),
                "HEALTHMON_MAX_LENGTH": str(settings.max_length), "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    logs = tmp_path / "logs"
    logs.mkdir()
    ports = {"a": _free_port(), "b": _free_port()}
    processes: list[Process] = []

    def env(name: str) -> dict[str, str]:
        return {**base_env, "HEALTHMON_DATA_DIR": str(tmp_path / f"data-{name}")}

    try:
        for name, port in ports.items():
            processes.append(Process(f"server-{name}", ["serve", "--host", "127.0.0.1", "--port", str(port),
                                                        "--log-level", "warning"], env(f"server-{name}"), logs))
        workers = [Process(f"worker-{i}", ["worker"], env(f"worker-{i}"), logs) for i in (1, 2)]
        processes += workers
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

        def up() -> bool:
            try:
                return all(_call("GET", f"{u}/healthz")[0] == 200 for u in urls.values())
            except OSError:
                return False

        _wait("both servers' /healthz", up, processes, START_TIMEOUT)
        # Both at once: each registers the served folder (the first load), which must not collide.
        for name, url in urls.items():
            status, body = _call("GET", f"{url}/readyz", token)
            assert status == 200 and body["status"] == "ready", (name, body)
        _wait("both workers", lambda: all("waiting for jobs" in w.tail() for w in workers), processes, START_TIMEOUT)

        # ---- every job runs exactly once, spread over both workers
        user = tokens.authenticate(factory, token)
        job_ids = [submit_for_scoring(factory, user, [Note(text=f"Job {j} note {k}: HbA1c {6 + k}.{j % 10}%, "
                                                          f"BP {120 + j}/{80 + k} mmHg, on metformin.",
                                                          note_id=f"j{j}-n{k}", patient_id=f"p{j % 7}")
                                                     for k in range(NOTES_PER_JOB)], str(version))
                   for j in range(JOBS)]

        def finished() -> bool:
            with factory() as s:
                left = s.scalar(select(func.count()).select_from(Job).where(Job.id.in_(job_ids),
                                                                           Job.status.in_(("queued", "running"))))
            return left == 0

        _wait(f"{JOBS} jobs to finish", finished, processes, JOBS_TIMEOUT)
        with factory() as s:
            jobs = s.scalars(select(Job).where(Job.id.in_(job_ids))).all()
            per_note = dict(s.execute(select(PredictionRow.note_id, func.count()).group_by(PredictionRow.note_id)).all())
        assert [(j.id, j.status, j.error) for j in jobs if j.status != "succeeded"] == []
        assert all(j.worker and j.result["scored"] == NOTES_PER_JOB for j in jobs)
        note_ids = [n for j in jobs for n in j.args["note_ids"]]
        assert len(set(note_ids)) == JOBS * NOTES_PER_JOB
        assert {n: per_note.get(n) for n in note_ids} == {n: 1 for n in note_ids}, "a note was scored twice or never"
        split = {name: sum(j.worker == name for j in jobs) for name in {j.worker for j in jobs}}
        print(f"jobs per worker: {split}")
        assert len(split) == 2, f"both workers should have taken jobs: {split}"
        for url in urls.values():
            _, metrics = _call("GET", f"{url}/metrics", token)
            assert 'healthmon_job_queue_depth{state="queued"} 0.0' in metrics

        # ---- both servers answer alike
        text = {"instances": [{"text": "Polyuria, glucose 240 mg/dL, started metformin.", "note_id": "same",
                               "patient_id": "p-same"}]}
        answers = [_call("POST", f"{u}/api/v1/models/active:predict", token, text) for u in urls.values()]
        assert [a[0] for a in answers] == [200, 200], answers
        assert answers[0][1]["predictions"][0]["probabilities"] == answers[1][1]["predictions"][0]["probabilities"]
        assert answers[0][1]["model_version"] == answers[1][1]["model_version"]

        stored = {"instances": [{"text": "Biopsy: adenocarcinoma; oncology referral.", "note_id": "via-a",
                                 "patient_id": "p-store"}]}
        status, body = _call("POST", f"{urls['a']}/api/v1/models/active:predict?store=true", token, stored)
        assert status == 200, body
        case_id = body["predictions"][0]["case_id"]
        status, case = _call("GET", f"{urls['b']}/api/v1/cases/{case_id}", token)
        assert status == 200, case
        assert (case["text"], case["note_id"], case["patient_id"]) == (stored["instances"][0]["text"], "via-a", "p-store")
        assert case["probabilities"] == body["predictions"][0]["probabilities"]

        recent = [_call("GET", f"{u}/api/v1/cases?view=recent&limit=100", token) for u in urls.values()]
        assert recent[0] == recent[1]
        assert recent[0][1]["cases"][0]["case"] == case_id

        # ---- a revoked token stops working on every server at once
        assert [_call("GET", f"{u}/api/v1/models", doomed)[0] for u in urls.values()] == [200, 200]
        tokens.revoke_token(factory, None, doomed_view.id)
        assert [_call("GET", f"{u}/api/v1/models", doomed)[0] for u in urls.values()] == [401, 401]
        assert [_call("GET", f"{u}/api/v1/models", token)[0] for u in urls.values()] == [200, 200]
        for p in processes:
            p.alive()
    finally:
        for p in processes:
            p.stop()
        for p in processes:
            print(f"---- {p.name} (exit {p.proc.returncode}) stderr tail:\n{p.tail()}")
        factory.kw["bind"].dispose()
