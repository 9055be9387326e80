"""Served prediction throughput: the real server under 16 concurrent clients, beside the library batch.

512 real notes (the Medical Abstracts test split, ``medical_abstract`` column, cut at word
boundaries to token counts spread uniformly over 30-400, as in inference_bench.py) are
scored three ways in one run, with the same model version and the same settings:

  * the library: ``Classifier.predict`` on all the notes in one call, in this process, before
    any server starts (so it has the 2 cores to itself) - the anchor;
  * the real server (``python -m healthmon serve`` on 127.0.0.1, a temporary data folder, the
    version pinned with HEALTHMON_ACTIVE_MODEL) with micro-batching on (the default
    HEALTHMON_API_BATCH_WAIT_MS and HEALTHMON_API_MAX_BATCH unless the environment sets them):
    ``--clients`` asyncio workers pull one note at a time from a shared queue and each POST it
    alone to ``/api/v1/models/active:predict``;
  * the same with micro-batching off (a second server, HEALTHMON_API_BATCH_WAIT_MS=0).

Each server gets a warm-up of ``--warmup`` requests (not timed, but their errors count) after
``/healthz`` and then ``/readyz`` (which loads the model) answer. Printed: notes/s and the ratio
to the library batch, p50/p95 request latency, errors (non-200 answers + exceptions + notes
left unsent when a run hits its time limit), the micro-batch sizes the server saw (the
difference of its ``healthmon_predict_batch_notes`` histogram across the timed run), and how
far the served probabilities drift from the library's. The client runs in this process on the
same 2 cores as the server, so the served figures include its cost (a few % of a core).

The last line is one JSON object: served_over_batch, unbatched_over_batch, errors (both server
runs, warm-ups included), p50_ms and p95_ms (the batching-on run).

    python benchmarks/api_bench.py [--model VERSION_DIR] [--notes 512] [--clients 16] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import httpx
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference_bench import mixed_length_notes  # the same note cut, so the figures compare
from train_bench import cpu_flags

from healthmon.config import Settings

TARGET = 0.80
ACCOUNT, PASSWORD = "bench", "bench-password-1"
PREDICT = "/api/v1/models/active:predict"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Deadline:
    """The whole run's time limit: every wait takes the smaller of its own limit and what is left."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self, cap: float | None = None) -> float:
        left = max(0.0, self.end - time.monotonic())
        return left if cap is None else min(cap, left)


@dataclass
class RunResult:
    name: str
    wait_ms: float
    seconds: float = float("nan")
    ok: int = 0
    errors: int = 0
    warmup_errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    batches: int = 0
    batched_notes: float = 0.0
    batch_buckets: dict[str, int] = field(default_factory=dict)
    probabilities: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def note_error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


def batch_histogram(text: str) -> tuple[float, float, dict[str, float]]:
    """Sum, count and cumulative buckets of ``healthmon_predict_batch_notes`` in Prometheus text."""
    total = count = 0.0
    buckets: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("healthmon_predict_batch_notes_sum"):
            total = float(line.split()[-1])
        elif line.startswith("healthmon_predict_batch_notes_count"):
            count = float(line.split()[-1])
        elif line.startswith("healthmon_predict_batch_notes_bucket"):
            le = re.search(r'le="([^"]+)"', line)
            if le:
                buckets[le.group(1)] = float(line.split()[-1])
    return total, count, buckets


class Server:
    """``python -m healthmon serve`` in a subprocess; stopped (terminate, then kill) by :meth:`stop`."""

    def __init__(self, data_dir: Path, model: Path, port: int, wait_ms: float | None, log: Path) -> None:
        env = {**os.environ, "HEALTHMON_DATA_DIR": str(data_dir), "HEALTHMON_ACTIVE_MODEL": str(model),
               "HEALTHMON_API_RATE_PER_MINUTE": "1000000000", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        if wait_ms is not None:
            env["HEALTHMON_API_BATCH_WAIT_MS"] = str(wait_ms)
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "healthmon", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True)  # Ctrl+C reaches only this process; the finally below stops the server

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, client: httpx.Client, token: str, deadline: Deadline, limit_s: float) -> None:
        """``/healthz`` (the process is up), then ``/readyz`` with the token (the model is loaded)."""
        stop_at = time.monotonic() + deadline.left(limit_s)
        for path, headers in (("/healthz", {}), ("/readyz", {"Authorization": f"Bearer {token}"})):
            last = "no answer"
            while True:
                if self.proc.poll() is not None:
                    raise SystemExit(f"the server exited ({self.proc.returncode}) before {path} answered:\n"
                                     f"{self.log_tail()}")
                if time.monotonic() > stop_at:
                    raise SystemExit(f"the server did not answer {path} within {limit_s:.0f} s (last: {last}):\n"
                                     f"{self.log_tail()}")
                try:
                    r = client.get(self.url + path, headers=headers, timeout=min(60.0, max(1.0, stop_at - time.monotonic())))
                    if r.status_code == 200:
                        break
                    last = f"HTTP {r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(0.25)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log_file.close()


async def load(url: str, token: str, notes: list[str], clients: int, timeout_s: float, run_limit_s: float,
               result: RunResult, *, record: bool) -> float:
    """Send each note alone, ``clients`` requests at a time from a shared queue; the wall seconds taken."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(notes)):
        queue.put_nowait(i)
    done: set[int] = set()
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout_s,
                                 trust_env=False) as client:

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                try:
                    r = await client.post(PREDICT, json={"instances": [{"text": notes[i], "note_id": str(i)}]})
                except (httpx.HTTPError, OSError) as exc:
                    done.add(i)
                    if record:
                        result.note_error(type(exc).__name__)
                    else:
                        result.warmup_errors += 1
                    continue
                elapsed = (time.perf_counter() - started) * 1000
                done.add(i)
                if r.status_code != 200:
                    if record:
                        result.note_error(f"HTTP {r.status_code}")
                    else:
                        result.warmup_errors += 1
                    continue
                if record:
                    result.ok += 1
                    result.latencies_ms.append(elapsed)
                    result.probabilities[i] = r.json()["predictions"][0]["probabilities"]

        started = time.perf_counter()
        tasks = [asyncio.create_task(worker()) for _ in range(clients)]
        _, pending = await asyncio.wait(tasks, timeout=run_limit_s)
        seconds = time.perf_counter() - started
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    unfinished = len(notes) - len(done)
    if unfinished:  # the run hit its time limit: every note not answered counts as an error
        for _ in range(unfinished):
            if record:
                result.note_error("time limit")
            else:
                result.warmup_errors += 1
    return seconds


def serve_and_load(name: str, wait_ms: float | None, settings_wait_ms: float, *, work: Path, model: Path,
                   port: int, token: str, notes: list[str], warmup: list[str], args: argparse.Namespace,
                   deadline: Deadline) -> RunResult:
    result = RunResult(name, settings_wait_ms)
    server = Server(work / "data", model, port, wait_ms, work / f"server-{port}.log")
    try:
        with httpx.Client(trust_env=False) as client:
            server.wait_ready(client, token, deadline, args.start_timeout)
            asyncio.run(load(server.url, token, warmup, args.clients, args.request_timeout,
                             deadline.left(args.run_timeout), result, record=False))
            auth = {"Authorization": f"Bearer {token}"}
            before = batch_histogram(client.get(server.url + "/metrics", headers=auth, timeout=30).text)
            result.seconds = asyncio.run(load(server.url, token, notes, args.clients, args.request_timeout,
                                              deadline.left(args.run_timeout), result, record=True))
            after = batch_histogram(client.get(server.url + "/metrics", headers=auth, timeout=30).text)
        result.batched_notes = after[0] - before[0]
        result.batches = int(after[1] - before[1])
        previous = 0.0
        for le, cumulative in after[2].items():
            n = int((cumulative - before[2].get(le, 0.0)) - previous)
            previous += n
            if n:
                result.batch_buckets[f"≤{float(le):g}" if le != "+Inf" else ">256"] = n
    finally:
        server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="version folder (default: the demo model, "
                        "built by `python -m healthmon demo`)")
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("HEALTHMON_SHARED_DATA_DIR",
                                                                           ROOT.parent / "shared" / "data")),
                        help="the shared datasets folder (default: $HEALTHMON_SHARED_DATA_DIR, else ../shared/data)")
    parser.add_argument("--notes", type=int, default=512)
    parser.add_argument("--clients", type=int, default=16, help="concurrent requests, one note each")
    parser.add_argument("--warmup", type=int, default=16, help="untimed requests per server before timing")
    parser.add_argument("--port-base", type=int, default=0,
                        help="ports for the two servers: this and the next (default: any free ports)")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--start-timeout", type=float, default=300.0,
                        help="seconds for a server to answer /healthz and /readyz")
    parser.add_argument("--run-timeout", type=float, default=900.0, help="seconds for one server's timed run")
    parser.add_argument("--time-limit", type=float, default=3600.0, help="seconds for the whole benchmark")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    deadline = Deadline(args.time_limit)
    settings = Settings()

    model = (args.model or settings.demo_model_dir).resolve()
    if not (model / "card.json").is_file():
        print(f"no model version at {model}: build the demo model with `python -m healthmon demo` "
              "(about 20 min on 2 cores) or pass --model VERSION_DIR", file=sys.stderr)
        raise SystemExit(2)
    csv_path = args.shared / "medical-abstracts" / "medical_tc_test.csv"
    if not csv_path.is_file():
        print(f"no {csv_path}: pass --shared with the shared datasets folder", file=sys.stderr)
        raise SystemExit(2)
    if settings.api_batch_wait_ms <= 0 or settings.api_max_batch <= 1:
        print("HEALTHMON_API_BATCH_WAIT_MS / HEALTHMON_API_MAX_BATCH turn micro-batching off in this environment; "
              "unset them for the batching-on run", file=sys.stderr)
        raise SystemExit(2)

    import pandas as pd

    from healthmon.model.classifier import Classifier
    from healthmon.services import accounts, tokens
    from healthmon.services.database import connect

    # (a) The anchor: the library's batch prediction, before any server runs.
    classifier = Classifier.from_pretrained(model, settings=settings)
    notes = mixed_length_notes(classifier.tokenizer, pd.read_csv(csv_path)["medical_abstract"].tolist(),
                               args.notes + args.warmup, args.seed)
    notes, warmup = notes[:args.notes], notes[args.notes:]
    lengths = np.array([len(ids) for ids in classifier.tokenizer(notes)["input_ids"]])
    classifier.predict(warmup or notes[:8])
    started = time.perf_counter()
    library = classifier.predict(notes)
    library_s = time.perf_counter() - started
    library_rate = len(notes) / library_s
    library_precision, torch_threads = classifier.precision, torch.get_num_threads()
    del classifier

    work = Path(tempfile.mkdtemp(prefix="healthmon-api-bench-"))
    runs: list[RunResult] = []
    try:
        factory = connect(Settings(data_dir=work / "data"))
        accounts.add_user(factory, None, ACCOUNT, "clinician", PASSWORD)
        token, _ = tokens.create_token(factory, None, ACCOUNT, "api-bench")
        factory.kw["bind"].dispose()
        ports = [args.port_base, args.port_base + 1] if args.port_base else [free_port(), free_port()]
        common = {"work": work, "model": model, "token": token, "notes": notes, "warmup": warmup, "args": args,
                  "deadline": deadline}
        # (b) batching on (the settings' wait), then the same server with batching off.
        runs.append(serve_and_load("served, micro-batching on", None, settings.api_batch_wait_ms,
                                   port=ports[0], **common))
        runs.append(serve_and_load("served, micro-batching off", 0.0, 0.0, port=ports[1], **common))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    on, off = runs
    errors = sum(r.errors + r.warmup_errors for r in runs)

    def drift(run: RunResult) -> float:
        diffs = [abs(p[label] - library[i].probabilities[label]) for i, p in run.probabilities.items() for label in p]
        return max(diffs) if diffs else float("nan")

    print(f"model: {model} ({library_precision}); notes: {len(notes)} from Medical Abstracts test "
          f"(real), cut to {lengths.min()}-{lengths.max()} tokens (mean {lengths.mean():.0f}); "
          f"{args.clients} concurrent clients, one note per request, {len(warmup)} warm-up requests per server")
    print(f"CPU flags: {cpu_flags()}; cores: {os.cpu_count()}; torch threads {torch_threads} (bench process; "
          f"the server runs torch's default in the same environment); max batch {settings.api_max_batch}")
    print("| path | notes/s | × library batch | p50 ms | p95 ms | errors | model calls (mean notes) "
          "| max prob drift vs library |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| library Classifier.predict, one call (anchor) | {library_rate:.1f} | 1.00 | – | – | – | 1 | 0 |")
    for r in runs:
        mean = r.batched_notes / r.batches if r.batches else float("nan")
        print(f"| {r.name} (wait {r.wait_ms:g} ms) | {r.rate:.1f} | {r.rate / library_rate:.2f} | {r.pct(50):.0f} | "
              f"{r.pct(95):.0f} | {r.errors} (+{r.warmup_errors} in warm-up) | {r.batches} ({mean:.1f}) | "
              f"{drift(r):.2g} |")
    for r in runs:
        kinds = ", ".join(f"{k} ×{n}" for k, n in r.error_kinds.items()) or "none"
        sizes = ", ".join(f"{k}: {n}" for k, n in r.batch_buckets.items()) or "none"
        print(f"{r.name}: {r.ok}/{len(notes)} answered 200 in {r.seconds:.1f} s; errors: {kinds}; "
              f"micro-batch sizes (notes per model call): {sizes}")
    print(f"batching on / off: {on.rate / off.rate if off.rate else float('nan'):.2f}×; "
          f"library batch took {library_s:.1f} s")
    ratio = on.rate / library_rate
    met = ratio >= TARGET and errors == 0
    print(f"target served ≥ {TARGET:.2f} × library batch, zero errors: {'MET' if met else 'MISSED'} ({ratio:.2f}×)")
    summary = {"served_over_batch": round(ratio, 3), "unbatched_over_batch": round(off.rate / library_rate, 3),
               "errors": errors, "p50_ms": round(on.pct(50), 1), "p95_ms": round(on.pct(95), 1)}
    if args.json:
        Path(args.json).write_text(json.dumps({
            **summary, "model": str(model), "notes": len(notes), "clients": args.clients, "cpu_flags": cpu_flags(),
            "torch_threads": torch_threads, "library_notes_per_s": library_rate,
            "runs": [{"name": r.name, "wait_ms": r.wait_ms, "notes_per_s": r.rate, "seconds": r.seconds, "ok": r.ok,
                      "errors": r.errors, "warmup_errors": r.warmup_errors, "error_kinds": r.error_kinds,
                      "p50_ms": r.pct(50), "p95_ms": r.pct(95), "model_calls": r.batches,
                      "batched_notes": r.batched_notes, "batch_sizes": r.batch_buckets, "drift": drift(r)}
                     for r in runs]}, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
