"""A sleeping task woken by a webhook: a workflow that waits for the outside world.

"checkout" is a parent whose child is a sleeping task: no executor runs it, it waits (until its
timeout) for ``executor.wakeup_sleeping_task_execution(task, unique_id, output=...)``. Here the
webhook handler is another trio task that arrives a moment later with the payment provider's
payload; the parent's finalize turns that payload into the order's result.

    python examples/sleeping_webhook.py [--storage memory]

Expected output: completed: {'order': 'paid', 'payment': {'paid': True, 'amount': 42}}
"""

from __future__ import annotations

import secrets

import trio

from durable_core import DurableExecutionNotFoundError, DurableExecutor, FinalizeInput, ParentTaskResult, child_task

from _cli import outcome, run_example


async def main(storage: str | None) -> str:
    executor = DurableExecutor(storage)
    payment_webhook = executor.sleeping_task(id="payment_webhook", timeout=60)

    def settle(input: FinalizeInput) -> dict:
        (payment,) = input.children
        if payment.status != "completed":
            raise RuntimeError(f"payment {payment.status}: {payment.error.message}")
        return {"order": "paid", "payment": payment.output}

    @executor.parent_task(id="checkout", timeout=5, finalize=settle)
    async def checkout(ctx, order_id):
        print(f"checkout {order_id}: waiting for the payment webhook")
        return ParentTaskResult(children=[child_task(payment_webhook, f"payment-{order_id}")])

    async def webhook_handler(unique_id: str, payload: dict) -> None:
        await trio.sleep(0.3)  # the payment provider calls back a moment later
        while True:
            try:
                woken = await executor.wakeup_sleeping_task_execution(payment_webhook, unique_id, output=payload)
                break
            except DurableExecutionNotFoundError:  # the workflow has not reached the sleeping step yet
                await trio.sleep(0.1)
        print(f"webhook: woke {unique_id}, now {woken.status}")

    order_id = secrets.token_hex(4)  # sleeping unique ids are unique across the storage
    async with executor, trio.open_nursery() as nursery:
        handle = await executor.enqueue_task(checkout, order_id)
        nursery.start_soon(webhook_handler, f"payment-{order_id}", {"paid": True, "amount": 42})
        return outcome(await handle.wait_and_get_finished_execution())


if __name__ == "__main__":
    run_example(main, __doc__)
