"""A FastAPI app that runs its durable tasks in-process, on its own asyncio loop.

The lifespan runs the executor of ``tasks.py`` with ``AsyncClient.run_executor``: trio runs as a
guest on uvicorn's asyncio loop, so the app costs no extra thread or process, and the handlers
enqueue, inspect and wake executions through the ``AsyncClient`` it yields. Stopping the server
(Ctrl-C, SIGTERM) shuts the executor down gracefully: running executions get the executor's
``shutdown_timeout``, then go back to ``ready`` for the next worker; nothing is lost.

    uvicorn examples.integration.fastapi_app:app

    curl -X POST localhost:8000/albums -H 'content-type: application/json' \\
         -d '{"album": "holidays", "images": [{"image": "beach.jpg", "width": 4000, "height": 3000}]}'
    curl 'localhost:8000/executions/te_...?wait=5'
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

from durable_core import DurableExecutionNotFoundError
from durable_core.client import AsyncClient

from .tasks import executor


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncClient.run_executor(executor) as client:
        app.state.durable = client
        yield


app = FastAPI(lifespan=lifespan)


def durable_client(request: Request) -> AsyncClient:
    return request.app.state.durable


Durable = Annotated[AsyncClient, Depends(durable_client)]


class Image(BaseModel):
    image: str
    width: int
    height: int


class Album(BaseModel):
    album: str
    images: list[Image]
    max_side: int = 256


class Report(BaseModel):
    name: str
    rows: int


class PaymentEvent(BaseModel):
    order_id: str
    amount: float


@app.post("/albums", status_code=202)
async def make_thumbnails(album: Album, client: Durable) -> dict[str, str]:
    return {"id": await client.enqueue("make_thumbnails", album.model_dump())}


@app.post("/reports", status_code=202)
async def generate_report(report: Report, client: Durable) -> dict[str, str]:
    return {"id": await client.enqueue("generate_report", report.model_dump())}


@app.post("/orders/{order_id}/checkout", status_code=202)
async def checkout(order_id: str, client: Durable) -> dict[str, str]:
    # the same order checked out twice (a double click, a retried request) is one execution
    return {"id": await client.enqueue("checkout", order_id, idempotency_key=order_id)}


@app.post("/webhooks/payments")
async def payment_webhook(event: PaymentEvent, client: Durable) -> dict[str, str]:
    """The payment provider confirms an order: wake the checkout waiting for it. A 404 makes the
    provider call again later (the checkout may not have reached its waiting step yet)."""
    try:
        woken = await client.wakeup("payment_confirmation", f"payment-{event.order_id}",
                                    output={"amount": event.amount})
    except DurableExecutionNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    return {"status": woken.status}


@app.get("/executions/{execution_id}")
async def execution_status(execution_id: str, client: Durable, wait: float = 0) -> dict[str, Any]:
    """The execution's status and result; ``?wait=SECONDS`` waits up to that long for it to finish."""
    try:
        execution = await client.get(execution_id)
        if wait > 0 and not execution.status.is_finished:
            execution = await client.wait(execution_id, timeout=min(wait, 30))
    except DurableExecutionNotFoundError:
        raise HTTPException(404, f"no execution {execution_id}") from None
    except TimeoutError:
        pass  # not finished yet: report it as it is
    return {"id": execution.execution_id, "task_id": execution.task_id, "status": execution.status,
            "output": execution.output, "error": execution.error.message if execution.error else None}
