"""The worker ``bench/clients.py`` starts (``durable worker _noop_worker:executor``, storage from
``DURABLE_CONFIG``): a no-op task that returns the wall-clock time it finished at, from which the
client measures how long ``wait`` takes to hear of a finish."""

from __future__ import annotations

import time

from durable_core import DurableExecutor

executor = DurableExecutor.from_config()


@executor.task(id="noop", timeout=10)
async def noop(ctx, input):
    return time.time()
