"""Micro-batching: concurrent predict requests share one model call.

An EHR sends one note per request, many at once. Scored one by one, each request pays the
model's per-call overhead and the cores sit half idle; gathered into one length-sorted batch
(the classifier sorts its windows by length), many small requests cost about what one batch
does.

The model runs on one worker thread, off the event loop, so the server keeps answering
health checks and other routes while it scores. That thread takes its next batch itself,
straight from the waiting requests, the moment a call ends: handing the batch through the
event loop instead left the model idle 14% of a loaded run (py-spy), waiting for a loop busy
parsing requests. Requests that arrive while a batch is being scored wait for the next one,
so under load batches fill by themselves; ``wait_s`` only matters when the model was idle.
"""

from __future__ import annotations

import asyncio
import itertools
import queue as thread_queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Generic, TypeVar

Result = TypeVar("Result")
#: The longest an idle model waits for more requests, in multiples of ``wait_s``.
MAX_WAITS = 4


@dataclass
class _Waiting(Generic[Result]):
    texts: list[str]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop

    def settle(self, result: object = None, error: BaseException | None = None) -> None:
        """Hand the outcome to the request's event loop (from the model thread)."""
        def deliver() -> None:
            if self.future.done():  # the client went away and its request was cancelled
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        try:
            self.loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # that loop has closed: nobody is waiting any more
            pass


class MicroBatcher(Generic[Result]):
    """Gathers ``submit`` calls into batches of at most ``max_batch`` texts for ``score``.

    Args:
        score: scores a list of texts, returning one result per text (runs on ``executor``).
        executor: the single thread the model runs on (shared by every batcher of a process,
            so two models never compete for the cores).
        max_batch: most texts per call; a request larger than this is scored on its own.
        wait_s: how long an idle model waits for more requests once the first has arrived.
            ``max_batch == 1`` or ``wait_s == 0`` scores every request on its own.
    """

    def __init__(self, score: Callable[[list[str]], Sequence[Result]], executor: Executor, *,
                 max_batch: int, wait_s: float) -> None:
        self.score = score
        self.executor = executor
        self.max_batch = max_batch
        self.wait_s = wait_s
        self._waiting: deque[_Waiting[Result]] = deque()
        self._arrived = threading.Condition()
        self._scheduled = False  # a drain is queued on, or running on, the executor

    @property
    def enabled(self) -> bool:
        return self.max_batch > 1 and self.wait_s > 0

    async def submit(self, texts: Sequence[str]) -> list[Result]:
        """The results for ``texts``, scored together with whatever else is waiting."""
        texts = list(texts)
        if not texts:
            return []
        if not self.enabled or len(texts) >= self.max_batch:
            return list(await asyncio.wrap_future(self._schedule(self.score, texts)))
        loop = asyncio.get_running_loop()
        waiting: _Waiting[Result] = _Waiting(texts, loop.create_future(), loop)
        with self._arrived:
            self._waiting.append(waiting)
            self._arrived.notify()
            if not self._scheduled:
                self._scheduled = True
                self._schedule(self._drain, True)
        return await waiting.future

    def _schedule(self, fn: Callable, *args) -> Future:
        urgent = getattr(self.executor, "submit_urgent", None)  # a ModelThread: predict goes first
        return urgent(fn, *args) if urgent is not None else self.executor.submit(fn, *args)

    def _take(self, batch: list[_Waiting[Result]], size: int) -> int:
        """Move waiting requests into ``batch`` while they fit; the new size. Holds ``_arrived``."""
        while self._waiting and size + len(self._waiting[0].texts) <= self.max_batch:
            waiting = self._waiting.popleft()
            if waiting.future.cancelled():  # its client went away before it was scored
                continue
            batch.append(waiting)
            size += len(waiting.texts)
        return size

    def _drain(self, was_idle: bool) -> None:
        """One model call on the executor's thread; queues the next drain while requests wait."""
        batch: list[_Waiting[Result]] = []
        with self._arrived:
            size = self._take(batch, 0)
            # An idle model waits while requests keep arriving (each arrival allows another
            # ``wait_s``, MAX_WAITS in all): the first of a burst should not go alone. Straight
            # after a call it does not wait: what arrived during the call is the next batch.
            if was_idle:
                started = time.monotonic()
                deadline = started + self.wait_s
                while size < self.max_batch and not self._waiting:
                    timeout = min(deadline, started + MAX_WAITS * self.wait_s) - time.monotonic()
                    if timeout <= 0 or not self._arrived.wait(timeout):
                        break
                    size = self._take(batch, size)
                    deadline = time.monotonic() + self.wait_s
        try:
            if batch:
                results = list(self.score([t for w in batch for t in w.texts]))
                start = 0
                for w in batch:
                    w.settle(results[start:start + len(w.texts)])
                    start += len(w.texts)
        except Exception as exc:  # every request of the batch learns of the failure
            for w in batch:
                w.settle(error=exc)
        finally:
            with self._arrived:
                if self._waiting:
                    self._schedule(self._drain, False)
                else:
                    self._scheduled = False


class ModelThread(Executor):
    """The one thread every model call of a process runs on, taking urgent work first.

    Predict batches (and the CDS Hooks service's work, which an EHR waits on while a chart
    opens) are submitted with :meth:`submit_urgent`; explanations and reports, which take seconds
    to minutes, with :meth:`submit`. A queued predict batch therefore never waits behind queued
    explanations, only behind the one call already running.
    """

    def __init__(self, name: str = "healthmon-model") -> None:
        self._work: thread_queue.PriorityQueue = thread_queue.PriorityQueue()
        self._order = itertools.count()
        self._name = name
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        return self._put(1, fn, args, kwargs)

    def submit_urgent(self, fn: Callable, /, *args, **kwargs) -> Future:
        return self._put(0, fn, args, kwargs)

    def _put(self, priority: int, fn: Callable, args: tuple, kwargs: dict) -> Future:
        future: Future = Future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        self._work.put((priority, next(self._order), future, fn, args, kwargs))
        return future

    def _run(self) -> None:
        while True:
            _, _, future, fn, args, kwargs = self._work.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to the caller, as ThreadPoolExecutor does
                future.set_exception(exc)
