"""What ``durable worker`` prints on stderr: lines for people (``--log-format text``) or one JSON
object per line for log shippers (``--log-format json``), its own messages included."""

from __future__ import annotations

import enum
import json
import logging
from datetime import UTC, datetime
from typing import Any

import click

LOG_FORMATS = ("text", "json")

_FIELDS = {"kind": "kind", "task_id": "task", "execution_id": "execution", "attempt": "attempt",
           "previous_status": "previous_status", "status": "status", "executor_id": "executor"}
"""Record attributes (those the ``logging`` plugin and the runner set) → JSON keys."""

worker_log = logging.getLogger("durable.worker")
_json = False


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    and, for records about an execution, ``kind``, ``task``, ``execution``, ``attempt``,
    ``previous_status``, ``status``, ``executor`` and ``error`` where known."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for attribute, key in _FIELDS.items():
            value = getattr(record, attribute, None)
            if value is not None:
                line[key] = value.value if isinstance(value, enum.Enum) else value
        error = getattr(record, "error", None)
        if error is not None:
            line["error"] = getattr(error, "message", str(error))
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(log_format: str, *, events: bool) -> None:
    """Send durable's log to stderr in ``log_format``, every state change too if ``events``."""
    global _json
    handler = logging.StreamHandler()
    if log_format == "json":
        _json = True
        handler.setFormatter(JsonFormatter())
        logging.getLogger().addHandler(handler)  # the task's own log lines too, one object each
        logging.getLogger("durable").setLevel(logging.INFO)
    elif events:
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logging.getLogger("durable.events").addHandler(handler)
    if events:
        logging.getLogger("durable.events").setLevel(logging.DEBUG)


def say(message: str) -> None:
    """A message of the worker itself: a plain line, or a JSON object under ``--log-format json``."""
    if _json:
        worker_log.info(message.strip())
    else:
        click.echo(message, err=True)
