"""The API's audit entries, written in batches by one background thread.

Every answered call gets an entry. Written one transaction per call, the commits cost the
served model throughput under load; gathered for at most ``interval_s`` they cost one commit
per batch. A process killed outright loses at most that interval's entries: the trade is
stated in docs/api.md. Readers in this process (the ``/audit`` route, tests) call
:meth:`AuditBuffer.flush` first, so they see their own calls.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from healthmon.services.api_calls import record_calls

log = logging.getLogger("healthmon.api")
Call = tuple[str, str, int, Sequence[str], "dict | None"]


class AuditBuffer:
    def __init__(self, factory: sessionmaker[Session], *, interval_s: float = 0.1, max_batch: int = 500) -> None:
        self.factory = factory
        self.interval_s = interval_s
        self.max_batch = max_batch
        self._queue: queue.Queue[Call] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(self, account: str, route: str, status: int, patients: Sequence[str] = ()) -> None:
        self._start()
        self._queue.put((account, route, status, tuple(patients), None))

    def flush(self) -> None:
        """Block until every entry added so far is written."""
        if self._thread is not None:
            self._queue.join()

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
            try:
                while len(batch) < self.max_batch:
                    batch.append(self._queue.get(timeout=self.interval_s))
            except queue.Empty:
                pass
            try:
                record_calls(self.factory, batch)
            except Exception:  # an audit failure is the operator's problem: logged loudly, never the caller's
                log.exception("could not write %d API audit entries", len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()
