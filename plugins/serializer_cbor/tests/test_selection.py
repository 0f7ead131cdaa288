"""Selecting ``cbor`` by name: payloads carry their serializer, so switching keeps old rows readable."""

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from durable_core import DurableExecutionNotFoundError, DurableExecutor, TaskExecution
from durable_core.storage.contract import Payload
from durable_storage_memory import MemoryStorage

from durable_conformance.serializers import same

INPUT = {"when": datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2))), "pair": (1, 2), "raw": b"\x00"}


def define_echo(executor: DurableExecutor) -> Any:
    @executor.task(id="echo", timeout=5)
    async def echo(ctx: Any, input: Any) -> Any:
        return {"got": input, "tags": {"a", "b"}}

    return echo


async def run(executor: DurableExecutor, input: Any, **options: Any) -> TaskExecution:
    return await (await executor.enqueue_task("echo", input, **options)).wait_and_get_finished_execution()


def test_switching_the_serializer_keeps_old_executions_readable() -> None:
    async def main() -> None:
        storage = MemoryStorage()
        cbor_executor = DurableExecutor(storage, serializer="cbor")
        define_echo(cbor_executor)
        async with cbor_executor:
            old = await run(cbor_executor, INPUT)
            # Written as cbor, run later by the json executor below.
            pending = await cbor_executor.enqueue_task("echo", INPUT, sleep_before_run=60)
        (record,) = await storage.get_executions([old.execution_id])
        assert record.input.serializer == record.output.serializer == "cbor"
        assert same(old.output, {"got": INPUT, "tags": {"a", "b"}})

        json_executor = DurableExecutor(storage)
        echo = define_echo(json_executor)
        async with json_executor:
            reread = await (await json_executor.get_task_execution_handle(echo, old.execution_id)).get_execution()
            mixed_handle = await json_executor.get_task_execution_handle(echo, pending.execution_id)
            mixed = await mixed_handle.wait_and_get_finished_execution()
            new = await run(json_executor, INPUT)
        assert same(reread.input, INPUT) and same(reread.output, old.output)
        assert same(mixed.output, old.output)
        mixed_record, new_record = await storage.get_executions([mixed.execution_id, new.execution_id])
        assert (mixed_record.input.serializer, mixed_record.output.serializer) == ("cbor", "json")
        assert new_record.input.serializer == new_record.output.serializer == "json"

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_payload_whose_serializer_is_not_installed_says_how_to_install_it() -> None:
    executor = DurableExecutor(MemoryStorage(), serializer="cbor")
    with pytest.raises(DurableExecutionNotFoundError) as caught:
        executor.decode(Payload("nosuch", b"\x00"))
    assert caught.value.message == "serializer 'nosuch' is not installed; run: durable install nosuch"


def test_the_config_selects_cbor_by_name(tmp_path: Path) -> None:
    config = tmp_path / "durable.toml"
    config.write_text('serializer = "cbor"\n\n[storage]\nname = "memory"\n', encoding="utf-8")
    executor = DurableExecutor.from_config(config)
    payload = executor.encode(INPUT, "echo", "input")
    assert payload.serializer == "cbor"
    assert same(executor.decode(payload), INPUT)
