"""Server-sent events: the dashboard's live view, ``GET /api/v1/events``.

Workers run in other processes, so their changes reach this server only through the storage: each
stream looks every ``Service.refresh`` seconds at what its page shows (the first page of the list
with its filters, or one execution) and sends it again only when it changed; the counts go out
whenever the sampler took new ones. A look is one indexed query, whatever the table's size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from . import views
from .api import endpoint, page, page_size, query, statuses_of
from .service import Service

KEEPALIVE = 15.0
"""Seconds of silence after which a comment keeps proxies from closing the stream."""


def event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + views.to_json(data) + b"\n\n"


@endpoint
async def events(service: Service, request: Request) -> Response:
    params = query(request, ("status", "task_id", "limit", "execution_id"))
    execution_id = params.get("execution_id")
    look: _Look
    if execution_id is not None:
        await service.executor.engine.get_record(execution_id)  # an unknown id is a 404 now, not a stream
        look = _Execution(service, execution_id)
    else:
        limit, statuses, task_id = page_size(params.get("limit")), statuses_of(params.get("status")), params.get("task_id")
        look = _FirstPage(service, statuses, task_id or None, limit)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(_stream(service, look), media_type="text/event-stream", headers=headers)


class _Look:
    """What one stream shows: ``read`` returns the event to send and a fingerprint of it."""

    async def read(self) -> tuple[bytes, object]:
        raise NotImplementedError


class _FirstPage(_Look):
    def __init__(self, service: Service, statuses: list[Any] | None, task_id: str | None, limit: int):
        self.service, self.statuses, self.task_id, self.limit = service, statuses, task_id, limit

    async def read(self) -> tuple[bytes, object]:
        records = await self.service.storage.list_executions(statuses=self.statuses, task_id=self.task_id,
                                                             limit=self.limit + 1)
        fingerprint = [(r.execution_id, r.status, r.updated_at) for r in records]
        return event("executions", page(records, self.limit)), fingerprint


class _Execution(_Look):
    def __init__(self, service: Service, execution_id: str):
        self.service, self.execution_id = service, execution_id

    async def read(self) -> tuple[bytes, object]:
        (record,) = await self.service.storage.get_executions([self.execution_id])
        if record is None:
            return event("deleted", {"execution_id": self.execution_id}), None
        return event("execution", views.detail(record, self.service.executor.decode)), (record.status,
                                                                                          record.updated_at)


async def _stream(service: Service, look: _Look) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    shown: object = ()
    stats_sent = -1
    quiet = 0.0
    while not service.stopping.is_set():
        data, fingerprint = await look.read()
        if fingerprint != shown:
            shown = fingerprint
            quiet = 0.0
            yield data
        if service.samples_taken != stats_sent:
            stats_sent = service.samples_taken
            yield event("stats", service.stats())
        quiet += service.refresh
        if quiet >= KEEPALIVE:
            quiet = 0.0
            yield b": keepalive\n\n"
        with trio.move_on_after(service.refresh):
            await service.stopping.wait()

