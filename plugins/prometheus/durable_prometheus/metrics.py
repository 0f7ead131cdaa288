"""The metrics, in a registry of their own, and how each is fed (docs/observability.md)."""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from durable_core import (
    FINISHED_TASK_EXECUTION_STATUSES,
    EventKind,
    ExecutionRun,
    TaskExecutionEvent,
    TaskExecutionStatus,
)
from durable_core.metrics import StorageOperationMetrics
from durable_core.plugins.hookspecs import RunningExecutor
from durable_core.storage import StatusCounts

S = TaskExecutionStatus
FINISHED = FINISHED_TASK_EXECUTION_STATUSES

POLL_INTERVAL = 5.0
"""Seconds between two looks at the storage (ready executions, counts) and the storage timings."""
QUEUE_SCAN_LIMIT = 10_000
"""Ready executions read per look to count them by task: a queue longer than this shows this many."""

_OUTCOMES = {S.READY: "retried", S.WAITING_FOR_CHILDREN: "waiting", S.WAITING_FOR_FINALIZE: "waiting"}
"""The ``outcome`` label of a run by the status it stored; a run cut off before storing one is
``cut_off``, any other status is its own name."""

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class Metrics:
    """Every metric of the plugin; ``render`` is the text format Prometheus scrapes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.finished = Counter("durable_executions_finished", "Executions that finished, by task and final status "
                                "(counted by the process that stored the finish).", ["task", "status"], registry=r)
        self.attempts = Histogram("durable_attempt_duration_seconds", "Runs of executions by this process, from "
                                  "claim to stored outcome, by task and outcome.", ["task", "outcome"],
                                  buckets=_SECONDS, registry=r)
        self.claim_delay = Histogram("durable_claim_delay_seconds", "Time from an execution becoming due "
                                     "(ready) to a worker claiming it, by task.", ["task"], buckets=_SECONDS,
                                     registry=r)
        self.expirations = Counter("durable_lease_expirations", "Leases that expired (a worker died or "
                                   "stalled), by task.", ["task"], registry=r)
        self.retries = Counter("durable_retries", "Failed runs scheduled to run again, by task.", ["task"],
                               registry=r)
        self.ready = Gauge("durable_ready_executions", "Executions ready to run (due now or later: retries, "
                           "sleep_before_run), by task: the queue depth.", ["task"], registry=r)
        self.by_status = Gauge("durable_executions", "Stored executions by status (storages that count them).",
                               ["status"], registry=r)
        self._storage = _StorageTimings()
        r.register(self._storage)
        self._ready_tasks: set[str] = set()
        self._tasks: dict[str, _TaskChildren] = {}

    def _task(self, task_id: str) -> _TaskChildren:
        children = self._tasks.get(task_id)
        if children is None:
            children = self._tasks[task_id] = _TaskChildren(self, task_id)
        return children

    def render(self) -> tuple[str, bytes]:
        """The Prometheus text format (thread-safe: the scrape runs on a server's thread)."""
        return CONTENT_TYPE_LATEST, generate_latest(self.registry)

    def observe(self, event: TaskExecutionEvent) -> None:
        """Called at every state change: most (enqueued, claimed, running on) change no metric
        and cost a few comparisons."""
        status, previous, kind = event.status, event.previous_status, event.kind
        if status in FINISHED and previous not in FINISHED:
            self._task(event.task_id).finished(status).inc()
        if kind == EventKind.EXPIRED and previous is not None:
            self._task(event.task_id).expirations.inc()
        elif kind == EventKind.COMMITTED and status is S.READY and event.error is not None:
            self._task(event.task_id).retries.inc()

    def run_ended(self, run: ExecutionRun, seconds: float) -> None:
        status = run.status
        children = self._task(run.task_id)
        children.attempt("cut_off" if status is None else _OUTCOMES.get(status, status.value)).observe(seconds)
        if run.due_at is not None:
            children.claim_delay.observe(max(run.claimed_at - run.due_at, 0.0))

    async def poll(self, executor: RunningExecutor) -> None:
        """Every ``POLL_INTERVAL``: the queue depth and counts from the storage, and the executor's
        storage timings (read here, on its trio thread, for scrapes to read any time)."""
        try:
            while True:
                await self._look(executor)
                await trio.sleep(POLL_INTERVAL)
        finally:
            self._storage.forget(executor.executor_id)

    async def _look(self, executor: RunningExecutor) -> None:
        storage = executor.storage
        ready = Tally(record.task_id for record in
                      await storage.list_executions(statuses=[S.READY], limit=QUEUE_SCAN_LIMIT))
        for task_id in self._ready_tasks | set(ready):
            self.ready.labels(task_id).set(ready[task_id])
        self._ready_tasks |= set(ready)
        inner = getattr(storage, "inner", storage)  # the storage the executor times
        if isinstance(inner, StatusCounts):
            counts = await inner.count_executions()
            for status in S:
                self.by_status.labels(status.value).set(counts.get(status, 0))
        self._storage.update(executor.executor_id, executor.get_storage_metrics())


class _TaskChildren:
    """The labelled children of one task's metrics, each looked up once: ``labels()`` takes a
    lock and checks its arguments, ten times the cost of what is done with the child, on the
    engine's thread. Created when first used, as ``labels()`` would: a series appears with its
    first value."""

    __slots__ = ("_metrics", "_task_id", "_finished", "_attempts", "_claim_delay", "_expirations", "_retries")

    def __init__(self, metrics: Metrics, task_id: str):
        self._metrics, self._task_id = metrics, task_id
        self._finished: dict[TaskExecutionStatus, Any] = {}
        self._attempts: dict[str, Any] = {}
        self._claim_delay: Any = None
        self._expirations: Any = None
        self._retries: Any = None

    def finished(self, status: TaskExecutionStatus) -> Any:
        child = self._finished.get(status)
        if child is None:
            child = self._finished[status] = self._metrics.finished.labels(self._task_id, status.value)
        return child

    def attempt(self, outcome: str) -> Any:
        child = self._attempts.get(outcome)
        if child is None:
            child = self._attempts[outcome] = self._metrics.attempts.labels(self._task_id, outcome)
        return child

    @property
    def claim_delay(self) -> Any:
        if self._claim_delay is None:
            self._claim_delay = self._metrics.claim_delay.labels(self._task_id)
        return self._claim_delay

    @property
    def expirations(self) -> Any:
        if self._expirations is None:
            self._expirations = self._metrics.expirations.labels(self._task_id)
        return self._expirations

    @property
    def retries(self) -> Any:
        if self._retries is None:
            self._retries = self._metrics.retries.labels(self._task_id)
        return self._retries


class _StorageTimings(Collector):
    """``durable_storage_operation_seconds``: a summary per storage operation of the executors
    running in this process (count and sum summed; quantiles of the last 10,000 calls while one
    executor runs), from their latest snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[str, dict[str, StorageOperationMetrics]] = {}

    def update(self, executor_id: str, metrics: dict[str, StorageOperationMetrics]) -> None:
        with self._lock:
            self._snapshots[executor_id] = metrics

    def forget(self, executor_id: str) -> None:
        with self._lock:
            self._snapshots.pop(executor_id, None)

    def collect(self) -> Iterator[Metric]:
        name = "durable_storage_operation_seconds"
        summary = Metric(name, "Storage calls of the executors in this process, by operation.", "summary")
        with self._lock:
            snapshots = list(self._snapshots.values())
        for operation in sorted({op for snapshot in snapshots for op in snapshot}):
            taken = [snapshot[operation] for snapshot in snapshots if operation in snapshot]
            labels = {"operation": operation}
            if len(snapshots) == 1:
                (only,) = taken
                for quantile, value in (("0.5", only.p50), ("0.9", only.p90), ("0.95", only.p95)):
                    summary.add_sample(name, {**labels, "quantile": quantile}, value)
            summary.add_sample(f"{name}_count", labels, sum(m.count for m in taken))
            summary.add_sample(f"{name}_sum", labels, sum(m.total for m in taken))
        yield summary
