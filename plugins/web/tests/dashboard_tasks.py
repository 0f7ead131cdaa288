"""Tasks the web plugin's tests enqueue over HTTP; ``durable worker dashboard_tasks:executor`` runs
them in another process, as a deployment would."""

from __future__ import annotations

from typing import Any

import trio

from durable_core import DurableExecutor, ParentTaskResult, child_task


def make_executor(storage: str | None = None, options: dict[str, Any] | None = None) -> DurableExecutor:
    """The executor with every task defined; without ``storage``, the configured one."""
    executor = (DurableExecutor.from_config() if storage is None else
                DurableExecutor(storage, storage_options=options or {}))

    @executor.task(id="greet", timeout=30)
    async def greet(ctx: Any, name: Any) -> dict[str, Any]:
        return {"hello": name}

    @executor.task(id="fail", timeout=30)
    async def fail(ctx: Any, reason: Any) -> None:
        raise ValueError(f"no good: {reason}")

    @executor.task(id="slow", timeout=3600)
    async def slow(ctx: Any, seconds: Any) -> str:
        await trio.sleep(seconds or 3600)
        return "rested"

    @executor.parent_task(id="fan_out", timeout=30)
    async def fan_out(ctx: Any, names: list[str]) -> ParentTaskResult:
        return ParentTaskResult(output=len(names), children=[child_task(greet, name) for name in names])

    executor.sleeping_task(id="approval", timeout=3600)
    return executor


executor = make_executor()
