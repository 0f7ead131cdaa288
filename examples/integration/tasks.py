"""The tasks of a photo-sharing shop, run by a worker process or inside the web app.

The executor reads ``durable.toml`` (or the file ``DURABLE_CONFIG`` names; SQLite in
``./durable.db`` without one), so the worker, the web app and ``durable`` commands in a shell all
use the same storage. Run the tasks in a worker of their own:

    durable worker examples.integration.tasks:executor

- ``resize_image``: one thumbnail, retried with backoff if it fails (the image store is down);
- ``make_thumbnails``: a parent with one ``resize_image`` child per image of an album;
- ``generate_report``: long-running, for the graceful shutdown (``shutdown_timeout``);
- ``checkout``: an order that waits for the payment provider's webhook (a sleeping child).

The pixel work is left out (it would be Pillow): each task computes its result and sleeps for the
time its work would take.
"""

from __future__ import annotations

import trio

from durable_core import (
    DurableExecutionError,
    DurableExecutor,
    FinalizeInput,
    ParentTaskResult,
    RetryOptions,
    TaskRunContext,
    child_task,
)

executor = DurableExecutor.from_config()


@executor.task(id="resize_image", timeout=30,
               retry=RetryOptions(max_attempts=3, base_delay=0.5, delay_multiplier=2, max_delay=10))
async def resize_image(ctx: TaskRunContext, input: dict) -> dict:
    """Fit the image into a square of ``max_side`` pixels, keeping its aspect ratio."""
    width, height, max_side = input["width"], input["height"], input.get("max_side", 256)
    if width <= 0 or height <= 0:  # no retry can fix that: fail at once
        raise DurableExecutionError.non_retryable(f"{input['image']}: invalid size {width}x{height}")
    scale = min(1.0, max_side / max(width, height))
    await trio.sleep(0.01)  # download, resize, upload
    return {"image": input["image"], "width": round(width * scale), "height": round(height * scale)}


def collect_thumbnails(input: FinalizeInput) -> dict:
    """The album's thumbnails; an image that failed after its retries is listed, not fatal."""
    done = [child.output for child in input.children if child.status == "completed"]
    failed = [child.execution_id for child in input.children if child.status != "completed"]
    return {"album": input.input["album"], "thumbnails": done, "failed": failed}


@executor.parent_task(id="make_thumbnails", timeout=30, finalize=collect_thumbnails)
async def make_thumbnails(ctx: TaskRunContext, input: dict) -> ParentTaskResult:
    """One ``resize_image`` child per image; they run in parallel, on any worker."""
    return ParentTaskResult(children=[child_task(resize_image, {**image, "max_side": input.get("max_side", 256)})
                                      for image in input["images"]])


@executor.task(id="generate_report", timeout=600)
async def generate_report(ctx: TaskRunContext, input: dict) -> dict:
    """A long job: 0.1 s per row. Stopped by a worker's shutdown, it starts over on another."""
    for _ in range(input["rows"]):
        await trio.sleep(0.1)
    return {"report": input["name"], "rows": input["rows"], "attempt": ctx.attempt}


payment_confirmation = executor.sleeping_task(id="payment_confirmation", timeout=3600)


def settle(input: FinalizeInput) -> dict:
    (payment,) = input.children
    if payment.status != "completed":
        raise RuntimeError(f"payment {payment.status}: {payment.error.message if payment.error else ''}")
    return {"order": input.input, "paid": payment.output}


@executor.parent_task(id="checkout", timeout=30, finalize=settle)
async def checkout(ctx: TaskRunContext, order_id: str) -> ParentTaskResult:
    """Wait, durably, for the payment provider to confirm ``order_id`` (its webhook calls
    ``wakeup("payment_confirmation", "payment-<order_id>", output=...)``)."""
    return ParentTaskResult(children=[child_task(payment_confirmation, f"payment-{order_id}")])
