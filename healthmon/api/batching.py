"""Micro-batching: concurrent predict requests share one model call.

An EHR sends one note per request, many at once. Scored one by one, each request pays the
model's per-call overhead and the cores sit half idle; gathered into one length-sorted batch
(the classifier sorts its windows by length), many small requests cost about what one batch
does. Requests that arrive while a batch is being scored wait for the next one, so under load
batches fill by themselves; ``wait_s`` only matters when the model is idle.

The model runs on one worker thread, off the event loop, so the server keeps answering
health checks and other routes while it scores.
"""

from __future__ import annotations

import asyncio
import itertools
import queue as thread_queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Generic, TypeVar

Result = TypeVar("Result")
#: The longest a batch waits for more requests, in multiples of ``wait_s``.
MAX_WAITS = 4


@dataclass
class _Waiting(Generic[Result]):
    texts: list[str]
    future: asyncio.Future


class MicroBatcher(Generic[Result]):
    """Gathers ``submit`` calls into batches of at most ``max_batch`` texts for ``score``.

    Args:
        score: scores a list of texts, returning one result per text (runs on ``executor``).
        executor: the single thread the model runs on (shared by every batcher of a process,
            so two models never compete for the cores).
        max_batch: most texts per call; a request larger than this is scored on its own.
        wait_s: how long to wait for more requests once the first has arrived, when idle.
            ``max_batch == 1`` or ``wait_s == 0`` scores every request on its own.
    """

    def __init__(self, score: Callable[[list[str]], Sequence[Result]], executor: Executor, *,
                 max_batch: int, wait_s: float) -> None:
        self.score = score
        self.executor = executor
        self.max_batch = max_batch
        self.wait_s = wait_s
        self._queue: asyncio.Queue[_Waiting[Result]] | None = None
        self._runner: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def enabled(self) -> bool:
        return self.max_batch > 1 and self.wait_s > 0

    async def submit(self, texts: Sequence[str]) -> list[Result]:
        """The results for ``texts``, scored together with whatever else is waiting."""
        texts = list(texts)
        loop = asyncio.get_running_loop()
        if not texts:
            return []
        if not self.enabled or len(texts) >= self.max_batch:
            return list(await self._call(texts))
        # One queue per event loop: a test client may start a new loop for the same app.
        if self._queue is None or self._runner is None or self._runner.done() or self._loop is not loop:
            self._loop = loop
            self._queue = asyncio.Queue()
            self._runner = loop.create_task(self._run(self._queue))
        waiting: _Waiting[Result] = _Waiting(texts, loop.create_future())
        await self._queue.put(waiting)
        return await waiting.future

    def _call(self, texts: list[str]) -> asyncio.Future:
        urgent = getattr(self.executor, "submit_urgent", None)  # a ModelThread: predict goes first
        future = urgent(self.score, texts) if urgent is not None else self.executor.submit(self.score, texts)
        return asyncio.wrap_future(future)

    async def _run(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        carried: _Waiting | None = None
        while True:
            first = carried or await queue.get()
            carried = None
            batch, size = [first], len(first.texts)
            # Wait while requests keep arriving (each arrival allows another ``wait_s``), up to
            # MAX_WAITS of them in all: the clients answered by the last batch send their next
            # notes in a burst, and catching the whole burst beats scoring its first few alone.
            started = loop.time()
            deadline = started + self.wait_s
            while size < self.max_batch:
                timeout = min(deadline, started + MAX_WAITS * self.wait_s) - loop.time()
                try:
                    nxt = queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(queue.get(), timeout)
                except (TimeoutError, asyncio.QueueEmpty):
                    break
                if size + len(nxt.texts) > self.max_batch:
                    carried = nxt  # starts the next batch, keeping arrival order
                    break
                batch.append(nxt)
                size += len(nxt.texts)
                deadline = loop.time() + self.wait_s
            texts = [t for w in batch for t in w.texts]
            try:
                results = list(await self._call(texts))
            except Exception as exc:  # every waiting request learns of the failure
                for w in batch:
                    if not w.future.done():
                        w.future.set_exception(exc)
                continue
            start = 0
            for w in batch:
                part = results[start:start + len(w.texts)]
                start += len(w.texts)
                if not w.future.done():  # a client that went away cancelled its future
                    w.future.set_result(part)


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
