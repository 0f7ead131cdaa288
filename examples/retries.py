"""Retries with exponential backoff: a task that fails twice, then succeeds.

``RetryOptions(max_attempts=3, base_delay=0.1, delay_multiplier=2)`` allows three retries; after
failure k the next attempt starts ``0.1 * 2**k`` seconds later. Each run sees its attempt number
and the previous attempt's error in ``ctx``.

    python examples/retries.py [--storage memory]

Expected output: completed after 3 attempts (retry_attempts=2): fetched https://example.com
"""

from __future__ import annotations

import trio

from durable_core import DurableExecutor, RetryOptions

from _cli import run_example

RETRY = RetryOptions(max_attempts=3, base_delay=0.1, delay_multiplier=2)


async def main(storage: str | None) -> str:
    executor = DurableExecutor(storage)
    last_attempt_at: list[float] = []

    @executor.task(id="flaky_fetch", timeout=5, retry=RETRY)
    async def flaky_fetch(ctx, url):
        now = trio.current_time()
        if ctx.attempt == 0:
            print("attempt 0: first run")
        else:
            print(f"attempt {ctx.attempt}: {now - last_attempt_at[-1]:.1f} s after the previous one "
                  f"(planned {RETRY.delay_after_failure(ctx.attempt - 1):.1f} s), "
                  f"previous error: {ctx.prev_error.message}")
        last_attempt_at.append(now)
        if ctx.attempt < 2:
            raise ConnectionError(f"{url} unreachable")
        return f"fetched {url}"

    async with executor:
        handle = await executor.enqueue_task(flaky_fetch, "https://example.com")
        finished = await handle.wait_and_get_finished_execution()
    return (f"{finished.status} after {finished.retry_attempts + 1} attempts "
            f"(retry_attempts={finished.retry_attempts}): {finished.output}")


if __name__ == "__main__":
    run_example(main, __doc__)
