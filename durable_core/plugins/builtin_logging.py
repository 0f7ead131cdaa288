"""Built-in plugin ``logging``: every state change as a DEBUG record on ``durable.events``.

Each record carries the event's fields as attributes (``execution_id``, ``task_id``, ``kind``,
``status``, ...) for structured handlers. It listens only while DEBUG is on for that logger
(``durable_observing``), so that otherwise the engine builds no event for it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from ..events import TaskExecutionEvent
from . import hookimpl

logger = logging.getLogger("durable.events")


def _listening() -> bool:
    return logger.isEnabledFor(logging.DEBUG)


@hookimpl
def durable_observing() -> Callable[[], bool]:
    return _listening


@hookimpl
def durable_task_execution_event(event: TaskExecutionEvent) -> None:
    previous = event.previous_status or "new"
    logger.debug(
        "%s %s [%s] %s -> %s%s",
        event.kind, event.task_id, event.execution_id, previous, event.status,
        f": {event.error.message}" if event.error else "",
        extra={field.name: getattr(event, field.name) for field in dataclasses.fields(event)},
    )
