"""Failures are recorded, never stuck: every way a run can go wrong ends the execution with an
``ErrorInfo`` that says what happened (type name, capped traceback), and the worker logs it.

Each runs on memory, SQLite and PostgreSQL (the ``shared_storage`` fixture), except the child
output that cannot be decoded: a memory storage that corrupts what it stores makes it."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from durable_core import DurableExecutor, ErrorInfo, FinalizeInput, ParentTaskResult, RetryOptions, Task, TaskExecution
from durable_core import TaskExecutionStatus as S
from durable_core import child_task
from durable_core.errors import MESSAGE_LIMIT, TRACEBACK_LIMIT, error_info_from_exception
from durable_core.storage.contract import Payload
from durable_storage_memory import MemoryStorage


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class Boom(Exception):
    pass


def executor(shared_storage) -> DurableExecutor:
    return shared_storage.executor(max_lease_expirations=3)


async def run_to_the_end(ex: DurableExecutor, task: Task) -> TaskExecution:
    """Runs ``task`` once on ``ex``, its executor started for this run, and returns the finished execution."""
    async with ex:
        return await (await ex.enqueue_task(task, None)).wait_and_get_finished_execution()


async def run_counting_attempts(
    shared_storage, task_id: str, body: Callable[[], object], retry: RetryOptions | None = None
) -> tuple[list[int], TaskExecution]:
    """Runs task ``task_id``, whose every attempt returns ``body()``, to the end on a new executor:
    the attempts it ran, and the finished execution."""
    ex = executor(shared_storage)
    attempts: list[int] = []

    @ex.task(id=task_id, timeout=5, retry=retry)
    async def task(ctx, input):
        attempts.append(ctx.attempt)
        return body()

    return attempts, await run_to_the_end(ex, task)


async def test_an_exception_whose_str_raises_fails_once_without_retries(shared_storage) -> None:
    def unprintable() -> None:
        raise Unprintable()

    runs, finished = await run_counting_attempts(shared_storage, "unprintable", unprintable)
    assert runs == [0]
    assert finished.status is S.FAILED
    error = finished.error
    assert error.type_name == f"{__name__}.Unprintable"
    assert "Unprintable" in error.message and "str() raised RuntimeError" in error.message
    assert error.is_retryable and "raise Unprintable()" in error.traceback


async def test_a_key_error_says_what_it_is_with_its_type_name_and_traceback(shared_storage) -> None:
    ex = executor(shared_storage)

    @ex.task(id="lookup", timeout=5)
    async def lookup(ctx, input):
        return {}["file"]

    finished = await run_to_the_end(ex, lookup)
    assert finished.status is S.FAILED
    assert finished.error.message == "KeyError: 'file'"
    assert finished.error.type_name == "builtins.KeyError"
    assert finished.error.traceback.startswith("Traceback (most recent call last)")
    assert 'return {}["file"]' in finished.error.traceback


async def test_an_output_that_cannot_be_serialized_fails_without_retries(shared_storage) -> None:
    runs, finished = await run_counting_attempts(shared_storage, "unserializable", object,
                                                 retry=RetryOptions(max_attempts=3))
    assert runs == [0]
    assert finished.status is S.FAILED
    assert finished.error.message.startswith("Cannot serialize output of task unserializable")
    assert not finished.error.is_retryable


async def test_an_error_message_that_cannot_be_stored_is_stored_escaped(shared_storage) -> None:
    ex = executor(shared_storage)

    @ex.task(id="odd_message", timeout=5)
    async def odd_message(ctx, input):
        raise Boom("lone \ud800 surrogate and a \x00 NUL")

    finished = await run_to_the_end(ex, odd_message)
    assert finished.status is S.FAILED
    assert finished.error.message == "lone \\ud800 surrogate and a \\x00 NUL"
    finished.error.message.encode("utf-8")
    finished.error.traceback.encode("utf-8")


class CorruptingStorage(MemoryStorage):
    """Stores every completed output of task ``child`` as bytes no serializer can read."""

    async def commit_runs(self, commits, now):
        for commit in commits:
            if commit.record.task_id == "child" and commit.record.output is not None:
                commit.record.output = Payload(commit.record.output.serializer, b"\xff not json")
        return await super().commit_runs(commits, now)


async def test_a_child_output_that_fails_to_decode_fails_its_parent() -> None:
    ex = DurableExecutor(CorruptingStorage(), max_lease_expirations=3)  # memory only: it corrupts what it stores

    @ex.task(id="child", timeout=5)
    async def child(ctx, input):
        return 1

    @ex.parent_task(id="parent", timeout=5)
    async def parent(ctx, input):
        return ParentTaskResult(output=None, children=[child_task(child, None)])

    finished = await run_to_the_end(ex, parent)
    assert finished.status is S.FAILED
    assert "child" in finished.error.message and not finished.error.is_retryable
    assert finished.error.message.startswith("Cannot read the output of child task child [executionId=te_")
    assert finished.error.type_name == "durable_core.steps.UnusableChildrenError"
    assert "durable_core.serialization.SerializationError: invalid 'json' payload" in finished.error.traceback


async def test_a_finalize_that_raises_ends_the_parent_finalize_failed(shared_storage) -> None:
    ex = executor(shared_storage)

    def finalize(input: FinalizeInput) -> None:
        raise Unprintable()

    @ex.parent_task(id="parent", timeout=5, finalize=finalize)
    async def parent(ctx, input):
        return ParentTaskResult(output=None, children=[])

    finished = await run_to_the_end(ex, parent)
    assert finished.status is S.FINALIZE_FAILED
    assert finished.error.type_name == f"{__name__}.Unprintable"
    assert not finished.error.is_retryable


async def test_a_finalize_output_that_cannot_be_serialized_ends_the_parent_finalize_failed(shared_storage) -> None:
    ex = executor(shared_storage)

    @ex.task(id="child", timeout=5)
    async def child(ctx, input):
        return 1

    @ex.parent_task(id="parent", timeout=5, finalize=lambda input: object())
    async def parent(ctx, input):
        return ParentTaskResult(output=None, children=[child_task(child, None)])

    finished = await run_to_the_end(ex, parent)
    assert finished.status is S.FINALIZE_FAILED
    assert finished.error.message.startswith("Cannot serialize output of task parent")


def test_a_long_traceback_keeps_its_end_and_a_long_message_its_start() -> None:
    try:
        raise Boom("x" * 3 * TRACEBACK_LIMIT + " at the bottom")
    except Boom as exc:
        info = error_info_from_exception(exc)
    assert info.traceback is not None and len(info.traceback) == TRACEBACK_LIMIT
    assert info.traceback.startswith("[traceback truncated to its last 16384 characters]\n")
    assert info.traceback.endswith("x at the bottom\n")
    assert info.message == "x" * MESSAGE_LIMIT


def test_error_info_made_the_old_way_has_no_type_name_nor_traceback() -> None:
    info = ErrorInfo("generic", "boom", True)
    assert (info.type_name, info.traceback, info.is_internal) == (None, None, False)


async def test_the_worker_logs_each_failed_attempt_and_each_scheduled_retry(
        shared_storage, caplog: pytest.LogCaptureFixture) -> None:
    ex = executor(shared_storage)

    @ex.task(id="flaky", timeout=5, retry=RetryOptions(max_attempts=1, base_delay=2.0))
    async def flaky(ctx, input):
        raise Boom("nope")

    with caplog.at_level(logging.INFO, logger="durable.executor"):
        finished = await run_to_the_end(ex, flaky)
    lines = [r.getMessage() for r in caplog.records if r.name == "durable.executor"]
    assert lines == [
        f"task flaky execution {finished.execution_id} attempt 0 failed: nope; retrying in 2 s (retry 1 of 1)",
        f"task flaky execution {finished.execution_id} attempt 1 failed: nope; not retried (status failed)",
    ]
