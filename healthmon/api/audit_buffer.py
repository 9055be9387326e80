"""The API's audit entries, written in batches by one background thread.

Every answered call gets an entry. Written one transaction per call, the commits cost the
served model throughput under load; gathered for at most ``interval_s`` they cost one commit
per batch. A failed write is retried with backoff before it is given up (and logged). A
process killed outright loses the entries not yet written, at most about ``interval_s`` of
calls: the trade is stated in docs/api.md. Readers in this process (the ``/audit`` route,
tests) call :meth:`AuditBuffer.flush` first, so they see their own calls.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from healthmon.services.api_calls import record_calls

log = logging.getLogger("healthmon.api")
Call = tuple[str, str, int, Sequence[str], "dict | None"]
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class AuditBuffer:
    def __init__(self, factory: sessionmaker[Session], *, interval_s: float = 0.1, max_batch: int = 500) -> None:
        self.factory = factory
        self.interval_s = interval_s
        self.max_batch = max_batch
        self._queue: queue.Queue[Call] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._done = threading.Condition()
        self._added = 0  # entries handed over so far
        self._finished = 0  # entries written (or given up after the retries) so far

    def add(self, account: str, route: str, status: int, patients: Sequence[str] = (),
            detail: dict | None = None) -> None:
        self._start()
        with self._done:
            self._added += 1
        self._queue.put((account, route, status, tuple(patients), detail))

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every entry added before this call is written; False if that took too long."""
        with self._done:
            target = self._added
            return self._done.wait_for(lambda: self._finished >= target, timeout=timeout_s)

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="healthmon-audit", daemon=True)
                    self._thread.start()
                    atexit.register(self.flush)  # a clean shutdown writes what is pending

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.interval_s  # a batch waits at most this long in all
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            self._write(batch)
            with self._done:
                self._finished += len(batch)
                self._done.notify_all()

    def _write(self, batch: list[Call]) -> None:
        for delay in (*RETRY_DELAYS_S, None):
            try:
                record_calls(self.factory, batch)
                return
            except Exception:  # a locked or unreachable database: try again, then say so loudly
                if delay is None:
                    log.exception("could not write %d API audit entries after %d tries; their accounts and routes: %s",
                                  len(batch), len(RETRY_DELAYS_S) + 1, sorted({(c[0], c[1]) for c in batch}))
                    return
                time.sleep(delay)
