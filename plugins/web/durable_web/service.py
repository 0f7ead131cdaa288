"""``Service``: what the HTTP handlers work on, in the server's trio run.

It holds the running client-mode executor (it runs no task) and the clients' operations on it
(``durable_core.client.operations.ClientOperations``), so enqueueing, cancelling and waking up
behave exactly as they do for ``Client``; and the counts sampler the dashboard draws.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import trio

from durable_core.client.operations import ClientOperations
from durable_core.executor import DurableExecutor
from durable_core.metrics import unmetered
from durable_core.storage import StatusCounts, Storage

from .views import iso

logger = logging.getLogger("durable.web")

ENVELOPE = 64 * 1024
"""Bytes a request body may hold beyond the executor's input limit: the JSON around the input."""


class Service:
    """The server's state: the executor, its operations, the counts sampled over time."""

    def __init__(self, executor: DurableExecutor, *, refresh: float = 1.0, stats_interval: float = 5.0,
                 stats_kept: int = 720):
        self.executor = executor
        self.operations = ClientOperations(executor, on_caller_thread=False)
        self.refresh = refresh
        """Seconds between two looks at the storage for a live view (server-sent events)."""
        self.body_limit = executor.options.max_serialized_input_size + ENVELOPE
        self.lease_duration = executor.options.lease_duration
        self.stats_interval = stats_interval
        self.samples: deque[tuple[float, dict[str, int]]] = deque(maxlen=stats_kept)
        self.samples_taken = 0
        self.stopping = trio.Event()
        """Set when the server shuts down: live streams end so that connections close."""
        self._known_tasks: set[str] = set()

    @property
    def storage(self) -> Storage:
        return self.executor.storage

    @property
    def counts_storage(self) -> StatusCounts | None:
        """The storage if it counts executions by status (optional ``StatusCounts``)."""
        storage = unmetered(self.storage)
        return storage if isinstance(storage, StatusCounts) else None

    async def is_known_task(self, task_id: str) -> bool:
        """A task this server's executor defines, or one with an execution stored (a worker
        defines it): an enqueue of anything else would wait forever, so it is refused."""
        if task_id in self._known_tasks or self.executor.find_task(task_id) is not None:
            return True
        if await self.storage.list_executions(task_id=task_id, limit=1):
            self._known_tasks.add(task_id)
            return True
        return False

    async def sample_counts(self) -> None:
        """Every ``stats_interval``, the counts by status (one indexed query); they are what the
        dashboard's chart shows, since the server started."""
        counter = self.counts_storage
        if counter is None:
            return
        while True:
            try:
                counts = await counter.count_executions()
            except Exception:  # a storage fault: log it, keep the server up, try again later
                logger.warning("counting executions failed", exc_info=True)
            else:
                self.samples.append((self.executor.now(), {str(s): n for s, n in counts.items() if n}))
                self.samples_taken += 1
            await trio.sleep(self.stats_interval)

    def stats(self) -> dict[str, Any]:
        latest = self.samples[-1][1] if self.samples else None
        return {"counts": latest, "interval": self.stats_interval,
                "history": [{"at": iso(at), "counts": counts} for at, counts in self.samples]}
