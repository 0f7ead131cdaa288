"""A Flask app that enqueues durable tasks and shows their status; the tasks run elsewhere.

It imports no task definition: the ``Client`` enqueues by task id, and a worker process that
defines the tasks runs them, applying the options this app does not give (timeout, retries) from
its definitions. The client and the worker find the same storage through ``durable.toml``.

    durable worker examples.integration.tasks:executor       # in one terminal
    flask --app examples.integration.flask_app run            # in another

    curl -X POST localhost:5000/thumbnails -H 'content-type: application/json' \\
         -d '{"image": "beach.jpg", "width": 4000, "height": 3000}'
    curl localhost:5000/executions/te_...
"""

from __future__ import annotations

import atexit
from typing import Any

from flask import Flask, request

from durable_core import DurableExecutionNotFoundError
from durable_core.client import Client

# One client for the whole app: it is thread-safe, and opens its storage on first use.
client = Client.from_config()
atexit.register(client.close)

app = Flask(__name__)


@app.post("/thumbnails")
def resize_image() -> tuple[dict[str, str], int]:
    # an Idempotency-Key header makes a retried request return the first execution's id
    execution_id = client.enqueue("resize_image", request.get_json(),
                                  idempotency_key=request.headers.get("Idempotency-Key"))
    return {"id": execution_id}, 202


@app.post("/reports")
def generate_report() -> tuple[dict[str, str], int]:
    return {"id": client.enqueue("generate_report", request.get_json())}, 202


@app.get("/executions/<execution_id>")
def execution_status(execution_id: str) -> tuple[dict[str, Any], int]:
    try:
        execution = client.get(execution_id)
    except DurableExecutionNotFoundError:
        return {"error": f"no execution {execution_id}"}, 404
    return {"id": execution.execution_id, "task_id": execution.task_id, "status": execution.status,
            "output": execution.output, "error": execution.error.message if execution.error else None}, 200
