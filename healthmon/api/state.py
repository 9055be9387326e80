"""What one server process holds for the API: settings, the database factory, and caches.

Nothing here is state a second server would need: loaded models and their batchers are
caches keyed by version folder, the rate-limit buckets are per process (documented: N
processes allow N times the rate), and the metrics are this process's own, as Prometheus
expects of each scraped target. Everything that must be shared lives in the database.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy.orm import Session, sessionmaker

from healthmon.api.audit_buffer import AuditBuffer
from healthmon.api.batching import MicroBatcher, ModelThread
from healthmon.config import Settings
from healthmon.model.classifier import Classifier
from healthmon.services.versions import register_served
from healthmon.types import Prediction

#: Refused tokens (401) one client address may send a minute before its requests are refused
#: unread (429): each refusal costs a database lookup, and guessing tokens is what it slows.
FAILED_AUTH_PER_MINUTE = 60
#: Versions one process keeps loaded: callers may name old versions, and each holds its weights.
MAX_LOADED_VERSIONS = 3


class Metrics:
    """This process's Prometheus metrics, in a registry of its own (one per app, so tests can build many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("healthmon_http_requests", "API requests answered, by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("healthmon_http_request_duration_seconds",
                                 "API request latency by route, method and status",
                                 ["route", "method", "status"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.predictions = Counter("healthmon_predictions", "Notes scored through the API, by predicted label",
                                   ["label"], registry=self.registry)
        self.batch_size = Histogram("healthmon_predict_batch_notes", "Notes per micro-batch scored by the model",
                                    registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.jobs = Gauge("healthmon_job_queue_depth", "Background jobs by state (queued: waiting for a worker)",
                          ["state"], registry=self.registry)
        self.served = Gauge("healthmon_served_model_info", "The model version this process serves (value 1)",
                            ["version"], registry=self.registry)


class RateLimiter:
    """A token bucket per API token: ``per_minute`` requests a minute, in bursts of up to as many."""

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate

    def waiting(self, key: str, now: float | None = None) -> float:
        """As :meth:`allow`, without using up a request: 0 when one would be allowed now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate


@dataclass
class ServedModel:
    folder: Path
    classifier: Classifier
    batcher: MicroBatcher[Prediction]


@dataclass
class ApiState:
    """Everything the routes share in one process."""

    settings: Settings
    factory: sessionmaker[Session]
    metrics: Metrics = field(default_factory=Metrics)
    # One thread runs every model call: torch already spreads one call over the cores, and two
    # calls at once would only fight over them.
    model_thread: ModelThread = field(default_factory=ModelThread)
    limiter: RateLimiter | None = None
    failed_auth: RateLimiter = field(default_factory=lambda: RateLimiter(FAILED_AUTH_PER_MINUTE))
    audit: AuditBuffer | None = None
    _models: dict[str, ServedModel] = field(default_factory=dict)
    _loading: threading.Lock = field(default_factory=threading.Lock)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = RateLimiter(self.settings.api_rate_per_minute)
        if self.audit is None:
            self.audit = AuditBuffer(self.factory)

    def model(self, folder: Path) -> ServedModel:
        """The loaded model for a version folder (loaded once per process; blocking: call off the event loop)."""
        served = self.cached(folder)
        if served is not None:
            return served
        key = str(Path(folder).resolve())
        with self._loading:
            served = self._models.get(key)
            if served is None:
                # Recorded as a version (active when the database has none), as the dashboard does
                # on its home page, so /models lists what is served and stored cases name it.
                register_served(self.factory, Path(folder))
                classifier = Classifier.from_pretrained(folder, settings=self.settings)
                metrics = self.metrics

                def score(texts: list[str]) -> list[Prediction]:
                    metrics.batch_size.observe(len(texts))
                    return classifier.predict(texts)

                batcher = MicroBatcher(score, self.model_thread, max_batch=self.settings.api_max_batch,
                                       wait_s=self.settings.api_batch_wait_ms / 1000.0)
                served = ServedModel(Path(folder), classifier, batcher)
                with self._cache_lock:
                    self._models[key] = served
                    while len(self._models) > MAX_LOADED_VERSIONS:  # the least recently used goes
                        self._models.pop(next(iter(self._models)))
        return served

    @property
    def max_body_bytes(self) -> int:
        """HEALTHMON_API_MAX_BODY_MB in bytes (the middleware's declared-length check and FastAPI's
        count of a streamed body)."""
        return int(self.settings.api_max_body_mb * 1024 * 1024)

    async def on_model_thread(self, func: Callable[..., Any], *args: Any, urgent: bool = False, **kwargs: Any) -> Any:
        """Run model work on the one model thread, so it never competes with predict batches for the
        cores. ``urgent`` work (a CDS call an EHR waits on) goes before queued explanations and reports."""
        submit = self.model_thread.submit_urgent if urgent else self.model_thread.submit
        return await asyncio.wrap_future(submit(functools.partial(func, *args, **kwargs)))

    def cached(self, folder: Path) -> ServedModel | None:
        """The loaded model for a folder, or None; never loads (safe on the event loop). A hit
        counts as a use, so the least recently used version is the one evicted."""
        key = str(Path(folder).resolve())
        with self._cache_lock:
            served = self._models.pop(key, None)
            if served is not None:
                self._models[key] = served
        return served
