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
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Result = TypeVar("Result")
#: The longest a batch waits for more requests, in multiples of ``wait_s``.
MAX_WAITS = 4


@dataclass
class _Waiting(Generic[Result]):
    texts: list[str]
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


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

    def __init__(self, score: Callable[[list[str]], Sequence[Result]], executor: ThreadPoolExecutor, *,
                 max_batch: int, wait_s: float) -> None:
        self.score = score
        self.executor = executor
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.batches = 0
        self.batched_texts = 0
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
            return list(await loop.run_in_executor(self.executor, self.score, texts))
        # One queue per event loop: a test client may start a new loop for the same app.
        if self._queue is None or self._runner is None or self._runner.done() or self._loop is not loop:
            self._loop = loop
            self._queue = asyncio.Queue()
            self._runner = loop.create_task(self._run(self._queue))
        waiting: _Waiting[Result] = _Waiting(texts, loop.create_future())
        await self._queue.put(waiting)
        return await waiting.future

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
                results = list(await loop.run_in_executor(self.executor, self.score, texts))
            except Exception as exc:  # every waiting request learns of the failure
                for w in batch:
                    if not w.future.done():
                        w.future.set_exception(exc)
                continue
            self.batches += 1
            self.batched_texts += len(texts)
            start = 0
            for w in batch:
                part = results[start:start + len(w.texts)]
                start += len(w.texts)
                if not w.future.done():  # a client that went away cancelled its future
                    w.future.set_result(part)
