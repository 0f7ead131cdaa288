"""Built-in plugin ``logging``: every state change as a DEBUG record on ``durable.events``.

Each record carries the event's fields as attributes (``execution_id``, ``task_id``, ``kind``,
``status``, ...) for structured handlers. The level check comes first: the engine emits an event
for every change, and with DEBUG off this observer costs one cached check.
"""

import dataclasses
import logging

from ..events import TaskExecutionEvent
from . import hookimpl

logger = logging.getLogger("durable.events")


@hookimpl
def durable_task_execution_event(event: TaskExecutionEvent) -> None:
    if not logger.isEnabledFor(logging.DEBUG):
        return
    previous = event.previous_status or "new"
    logger.debug(
        "%s %s [%s] %s -> %s%s",
        event.kind, event.task_id, event.execution_id, previous, event.status,
        f": {event.error.message}" if event.error else "",
        extra={field.name: getattr(event, field.name) for field in dataclasses.fields(event)},
    )
