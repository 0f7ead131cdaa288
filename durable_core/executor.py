"""The executor: registers tasks, enqueues executions, and runs them with fenced leases."""

from __future__ import annotations

import functools
import inspect
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any

import trio

from .batching import Coalescer
from .config import DEFAULT_STORAGE, DEFAULT_STORAGE_OPTIONS, load_config
from .errors import (
    DurableExecutionError,
    DurableExecutionNotFoundError,
    DurableExecutionTimedOutError,
    ErrorInfo,
    error_info_from_exception,
)
from .events import TaskExecutionEvent
from .handles import TaskExecutionHandle, execution_not_found, to_task_execution
from .metrics import MeteredStorage, StorageOperationMetrics
from .models import (
    ExecutionRef,
    ParentRef,
    RetryOptions,
    TaskExecution,
    TaskRunContext,
)
from .status import TaskExecutionStatus as S
from .steps import Outcome, StepContext, run_step
from .storage.contract import (
    ExecutionRecord,
    Payload,
    RunCommit,
    SleepingWakeup,
    StatusChange,
    Storage,
)
from .tasks import (
    Task,
    TaskKind,
    check_retry,
    check_sleep_before_run,
    check_task_id,
    check_timeout,
)

log = logging.getLogger("durable.executor")

_MiB = 1024 * 1024
_WAITER_REFRESH_GAP = 0.01


def new_id(prefix: str, length: int) -> str:
    """A random id: ``prefix`` and ``length`` URL-safe characters (6 random bits each)."""
    return prefix + secrets.token_urlsafe(length * 3 // 4)


_SORTABLE = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"  # URL-safe, in ASCII order


def new_execution_id() -> str:
    """``te_``, 8 characters of the time in milliseconds, 16 random characters (96 bits).

    Ids made close in time share a prefix and sort by it, so a storage's index on them grows at
    its end instead of everywhere: with a million executions stored, random ids made every
    insert touch a different index page.
    """
    ms = time.time_ns() // 1_000_000
    stamp = "".join(_SORTABLE[(ms >> shift) & 63] for shift in range(42, -1, -6))
    return "te_" + stamp + secrets.token_urlsafe(12)


class _Clock:
    """The executor's one clock: wall time anchored once, advanced by trio's clock.

    Under ``trio.testing.MockClock`` the whole engine therefore runs in virtual time.
    """

    def __init__(self) -> None:
        self._trio_anchor = trio.current_time()
        self._wall_anchor = time.time()

    def now(self) -> float:
        return self._wall_anchor + (trio.current_time() - self._trio_anchor)

    def to_trio(self, wall: float) -> float:
        return wall - self._wall_anchor + self._trio_anchor


class _Finish:
    """What handles waiting for one execution wait on: set once it finished, with its finished
    record when the executor has it already (then the handles need not read it again)."""

    __slots__ = ("event", "record")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.record: ExecutionRecord | None = None


class _Run:
    """One claimed record being worked on by this executor."""

    __slots__ = ("record", "scope", "revoked", "hand_back")

    def __init__(self, record: ExecutionRecord):
        self.record = record
        self.scope = trio.CancelScope()
        self.revoked = False
        self.hand_back = False


def _positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> Any:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"Invalid executor option {name}: expected a number {bound}, got {value!r}")
    return value


class DurableExecutor:
    """Runs durable tasks on a storage shared with any number of other executors.

    ``storage`` is a storage object or the name of an installed storage plugin, opened with
    ``storage_options`` when the executor starts; by default the embedded SQLite storage in
    ``./durable.db``. Use ``async with executor:``; leaving the block shuts down gracefully.
    With ``max_concurrent_task_executions=0`` the executor is a client: it enqueues, waits,
    cancels and wakes, but never runs a task.
    """

    def __init__(
        self,
        storage: Storage | str | None = None,
        *,
        storage_options: dict[str, Any] | None = None,
        serializer: Any = None,
        max_concurrent_task_executions: int = 1000,
        max_task_executions_per_batch: int = 100,
        expire_leeway: float = 300.0,
        poll_interval: float = 0.5,
        shutdown_timeout: float = 15.0,
        max_lease_expirations: int = 10,
        max_children_per_task_execution: int = 1000,
        max_serialized_input_size: int = _MiB,
        max_serialized_output_size: int = _MiB,
        plugins: Any = None,
    ):
        from .plugins.manager import default_registry

        if storage is None:
            storage, storage_options = DEFAULT_STORAGE, storage_options or dict(DEFAULT_STORAGE_OPTIONS)
        if not isinstance(storage, str) and not isinstance(storage, Storage):
            raise TypeError(
                f"storage must be a storage object or the name of a storage plugin, got {storage!r}"
            )
        if storage_options is not None and not isinstance(storage, str):
            raise ValueError("storage_options apply only when storage is given by name")
        self.max_concurrent_task_executions = _positive(
            "max_concurrent_task_executions", max_concurrent_task_executions, integer=True, allow_zero=True
        )
        self.max_task_executions_per_batch = _positive(
            "max_task_executions_per_batch", max_task_executions_per_batch, integer=True
        )
        self.expire_leeway = _positive("expire_leeway", expire_leeway, allow_zero=True)
        self.poll_interval = _positive("poll_interval", poll_interval)
        self.shutdown_timeout = _positive("shutdown_timeout", shutdown_timeout, allow_zero=True)
        self.max_lease_expirations = _positive(
            "max_lease_expirations", max_lease_expirations, integer=True, allow_zero=True
        )
        self.max_children_per_task_execution = _positive(
            "max_children_per_task_execution", max_children_per_task_execution, integer=True
        )
        self.max_serialized_input_size = _positive(
            "max_serialized_input_size", max_serialized_input_size, integer=True
        )
        self.max_serialized_output_size = _positive(
            "max_serialized_output_size", max_serialized_output_size, integer=True
        )
        self.executor_id = new_id("de_", 8)
        self._plugins = plugins if plugins is not None else default_registry()
        self._storage_spec = storage
        self._storage_options = dict(storage_options or {})
        self._serializer = (
            self._plugins.serializer(serializer or "json")
            if serializer is None or isinstance(serializer, str)
            else serializer
        )
        self._serializers = {self._serializer.name: self._serializer}
        self._tasks: dict[str, Task] = {}
        self._runs: dict[str, _Run] = {}
        self._finishes: dict[str, _Finish] = {}
        self._state = "new"
        self._storage: MeteredStorage | None = None
        self._reads: Coalescer[str, ExecutionRecord | None] = Coalescer(
            lambda ids: self.storage.get_executions(ids)
        )
        self._commits: Coalescer[RunCommit, None] = Coalescer(self._commit_batch)
        self._exit_stack: AsyncExitStack | None = None
        self._background: trio.CancelScope | None = None
        self._run_nursery: trio.Nursery | None = None
        self._wake_claimer = trio.Event()
        self._waiters_stale = trio.Event()
        self._capacity_freed = trio.Event()
        self._next_ready_at = float("inf")
        self._clock: _Clock | None = None
        self.shutdown_event = trio.Event()

    @classmethod
    def from_config(cls, path: str | None = None, **overrides: Any) -> DurableExecutor:
        """An executor configured by ``durable.toml`` (or ``[tool.durable]`` in pyproject.toml,
        ``DURABLE_CONFIG``, or ``path``); keyword ``overrides`` win over the file."""
        config = load_config(path)
        try:
            return cls(**config.executor_kwargs(**overrides))
        except ValueError as exc:
            raise config.error(exc) from None

    @property
    def tasks(self) -> dict[str, Task]:
        """The tasks defined on this executor, by id."""
        return dict(self._tasks)

    # ----------------------------------------------------------------------------- definitions

    def _register(self, task: Task) -> Task:
        if self._state == "stopped":
            raise DurableExecutionError("Durable executor shutdown", is_retryable=False)
        if task.id in self._tasks:
            raise ValueError(f"Task with given id already exists [taskId={task.id}]")
        self._tasks[task.id] = task
        return task

    def _validator(self, task_id: str, input_schema: Any, validate_input: Any) -> Any:
        if input_schema is not None and validate_input is not None:
            raise ValueError(f"Task {task_id}: give input_schema or validate_input, not both")
        if validate_input is not None:
            if not callable(validate_input):
                raise ValueError(f"Task {task_id}: validate_input must be callable")
            return validate_input
        if input_schema is None:
            return None
        validator = self._plugins.input_validator(input_schema, task_id)
        if validator is None:
            raise ValueError(
                f"Task {task_id}: input_schema {input_schema!r} is not a dataclass, a pydantic "
                "model or anything an installed validation plugin recognises"
            )
        return validator

    def _define(self, kind: TaskKind, run: Callable[..., Any] | None, *, id: str, timeout: float,
                retry: RetryOptions | None, sleep_before_run: float | None, input_schema: Any,
                validate_input: Any, **extra: Any) -> Task:
        check_task_id(id)
        return self._register(
            Task(
                id=id,
                kind=kind,
                timeout=check_timeout(id, timeout),
                retry=check_retry(id, retry),
                sleep_before_run=check_sleep_before_run(id, sleep_before_run),
                run=run,
                validator=self._validator(id, input_schema, validate_input),
                **extra,
            )
        )

    def task(self, *, id: str, timeout: float, retry: RetryOptions | None = None,
             sleep_before_run: float = 0.0, input_schema: Any = None,
             validate_input: Callable[[Any], Any] | None = None,
             run: Callable[..., Any] | None = None) -> Any:
        """Define a task. With ``run=`` returns the ``Task``; without, a decorator that does.

        ``run(ctx, input)`` may be ``async def`` or a plain ``def`` (run in a worker thread).
        """
        def define(fn: Callable[..., Any]) -> Task:
            return self._define(TaskKind.TASK, fn, id=id, timeout=timeout, retry=retry,
                                sleep_before_run=sleep_before_run, input_schema=input_schema,
                                validate_input=validate_input)

        return define(run) if run is not None else define

    def parent_task(self, *, id: str, timeout: float, finalize: Task | Callable[..., Any] | None = None,
                    retry: RetryOptions | None = None, sleep_before_run: float = 0.0,
                    input_schema: Any = None, validate_input: Callable[[Any], Any] | None = None,
                    run: Callable[..., Any] | None = None) -> Any:
        """Define a parent task whose run returns ``ParentTaskResult(output, children)``.

        ``finalize`` is a task of this executor (plain or parent) or a callable run inline; it
        receives ``FinalizeInput`` once every child has finished.
        """
        if isinstance(finalize, Task):
            if self._tasks.get(finalize.id) is not finalize:
                raise ValueError(f"Finalize task {finalize.id} of task {id} is not defined on this executor")
            if finalize.kind is TaskKind.SLEEPING:
                raise ValueError(f"Task {id}: a sleeping task cannot be a finalize")
        elif finalize is not None and not callable(finalize):
            raise ValueError(f"Task {id}: finalize must be a Task or a callable, got {finalize!r}")

        def define(fn: Callable[..., Any]) -> Task:
            return self._define(TaskKind.PARENT, fn, id=id, timeout=timeout, retry=retry,
                                sleep_before_run=sleep_before_run, input_schema=input_schema,
                                validate_input=validate_input, finalize=finalize)

        return define(run) if run is not None else define

    def sleeping_task(self, *, id: str, timeout: float) -> Task:
        """Define a task finished from outside by ``wakeup_sleeping_task_execution``; its enqueue
        input is a unique id (1..255 chars) that the waker uses."""
        return self._define(TaskKind.SLEEPING, None, id=id, timeout=timeout, retry=None,
                            sleep_before_run=0.0, input_schema=None, validate_input=None)

    def sequential_tasks(self, id: str, tasks: Sequence[Task], *, timeout: float = 30.0) -> Task:
        """Define a task running ``tasks`` one after another, each output the next one's input."""
        tasks = tuple(tasks)
        if not tasks:
            raise ValueError(f"Sequential task {id}: No tasks provided")
        for t in tasks:
            self._check_defined(id, t)
        return self._define(TaskKind.SEQUENTIAL, None, id=id, timeout=timeout, retry=None,
                            sleep_before_run=0.0, input_schema=None, validate_input=None, steps=tasks)

    def looping_task(self, id: str, iteration_task: Task, max_attempts: int,
                     sleep_before_run: float | Callable[[int], float] | None = None, *,
                     timeout: float = 30.0) -> Task:
        """Define a task re-running ``iteration_task`` until it returns ``{"is_done": True, ...}``.

        Result: ``{"is_success": True, "output": x}``, or ``{"is_success": False}`` after
        ``max_attempts`` iterations. ``sleep_before_run`` (seconds, or a function of the attempt)
        delays each iteration.
        """
        self._check_defined(id, iteration_task)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts <= 0:
            raise ValueError(f"Looping task {id}: Max attempts must be greater than 0, got {max_attempts!r}")
        if sleep_before_run is not None and not callable(sleep_before_run):
            check_sleep_before_run(id, sleep_before_run)
        return self._define(TaskKind.LOOPING, None, id=id, timeout=timeout, retry=None,
                            sleep_before_run=0.0, input_schema=None, validate_input=None,
                            steps=(iteration_task,), max_attempts=max_attempts,
                            iteration_sleep=sleep_before_run)

    def _check_defined(self, owner: str, task: Any) -> None:
        if not isinstance(task, Task) or self._tasks.get(task.id) is not task:
            raise ValueError(f"Task {owner}: {task!r} is not a task defined on this executor")

    def _task(self, task: Task | str) -> Task:
        task_id = task.id if isinstance(task, Task) else task
        found = self._tasks.get(task_id)
        if found is None:
            raise DurableExecutionNotFoundError(f"Task not found [taskId={task_id}]")
        return found

    # ----------------------------------------------------------------------------- lifecycle

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            raise DurableExecutionError(
                "Durable executor is not running; use `async with executor:`", is_retryable=False
            )
        return self._storage  # type: ignore[return-value]

    async def __aenter__(self) -> DurableExecutor:
        if self._state != "new":
            raise DurableExecutionError("A durable executor can be started only once", is_retryable=False)
        self._state = "starting"
        self._clock = _Clock()
        stack = AsyncExitStack()
        try:
            storage = self._storage_spec
            if isinstance(storage, str):
                from .storage.opening import open_storage

                storage = await stack.enter_async_context(
                    open_storage(storage, plugins=self._plugins, **self._storage_options)
                )
            self._storage = MeteredStorage(storage)
            self._run_nursery = await stack.enter_async_context(trio.open_nursery())
            await self._run_nursery.start(self._run_background)
        except BaseException:
            await stack.aclose()
            self._state = "stopped"
            raise
        self._exit_stack = stack
        self._state = "running"
        return self

    async def _run_background(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The claim and maintenance loops, under a scope of their own that shutdown cancels."""
        with trio.CancelScope() as self._background:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._claim_loop)
                nursery.start_soon(self._maintenance_loop)
                if self.storage.capabilities.change_notifications:
                    nursery.start_soon(self._change_loop)
                    nursery.start_soon(self._waiter_refresh_loop)
                task_status.started()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop claiming, give running tasks ``shutdown_timeout`` seconds, then hand the rest
        back to ``ready`` at once. Idempotent."""
        if self._state in ("new", "stopped"):
            self._state = "stopped"
            return
        if self._state == "stopping":
            return
        self._state = "stopping"
        self.shutdown_event.set()
        assert self._background is not None and self._exit_stack is not None
        self._background.cancel()
        try:
            with trio.move_on_after(self.shutdown_timeout):
                while self._runs:
                    await self._capacity_freed_wait()
        finally:
            for run in self._runs.values():
                run.hand_back = True
                run.scope.cancel()
            try:
                await self._exit_stack.aclose()
            finally:
                self._state = "stopped"

    async def _capacity_freed_wait(self) -> None:
        self._capacity_freed = trio.Event()
        await self._capacity_freed.wait()

    def _check_running(self) -> None:
        if self._state == "stopped" or self._state == "stopping":
            raise DurableExecutionError("Durable executor shutdown", is_retryable=False)
        if self._state != "running":
            raise DurableExecutionError(
                "Durable executor is not running; use `async with executor:`", is_retryable=False
            )

    @property
    def running_task_execution_ids(self) -> frozenset[str]:
        return frozenset(self._runs)

    @property
    def running_task_executions_count(self) -> int:
        return len(self._runs)

    def get_storage_metrics(self) -> dict[str, StorageOperationMetrics]:
        """Per storage operation: count, min, max, p50, p90 and p95 durations in seconds."""
        return self._storage.metrics() if self._storage is not None else {}

    def now(self) -> float:
        assert self._clock is not None
        return self._clock.now()

    # ----------------------------------------------------------------------------- payloads

    def encode(self, value: Any, task_id: str, what: str) -> Payload:
        try:
            data = self._serializer.serialize(value)
        except DurableExecutionError as exc:
            raise DurableExecutionError(
                f"Cannot serialize {what} of task {task_id}: {exc.message}", is_retryable=False
            ) from exc
        except Exception as exc:
            raise DurableExecutionError(
                f"Cannot serialize {what} of task {task_id}: {exc}", is_retryable=False
            ) from exc
        limit = self.max_serialized_input_size if what == "input" else self.max_serialized_output_size
        if len(data) > limit:
            raise DurableExecutionError(
                f"Serialized {what} of task {task_id} is {len(data)} bytes, more than the limit of "
                f"{limit} bytes (executor option max_serialized_{what}_size)",
                is_retryable=False,
            )
        return Payload(self._serializer.name, data)

    def decode(self, payload: Payload) -> Any:
        serializer = self._serializers.get(payload.serializer)
        if serializer is None:
            serializer = self._serializers[payload.serializer] = self._plugins.serializer(payload.serializer)
        return serializer.deserialize(payload.data)

    def _to_task_execution(self, record: ExecutionRecord) -> TaskExecution:
        return to_task_execution(record, self.decode)

    # ----------------------------------------------------------------------------- records

    def new_record(self, task: Task, input: Any, now: float, *, retry: RetryOptions | None = None,
                   sleep_before_run: float | None = None, timeout: float | None = None,
                   root: ExecutionRef | None = None, parent: ParentRef | None = None,
                   idempotency_key: str | None = None, payload: Payload | None = None) -> ExecutionRecord:
        """A new execution of ``task``; ``payload`` (an already serialized input) wins over ``input``."""
        retry = task.retry if retry is None else check_retry(task.id, retry)
        sleep = task.sleep_before_run if sleep_before_run is None else check_sleep_before_run(task.id, sleep_before_run)
        timeout = task.timeout if timeout is None else check_timeout(task.id, timeout)
        if task.kind is TaskKind.SLEEPING:
            unique_id = self.decode(payload) if payload is not None else input
            _check_unique_id(task.id, unique_id)
            payload = payload or self.encode(unique_id, task.id, "input")
            return ExecutionRecord(
                execution_id=new_execution_id(), task_id=task.id, status=S.RUNNING, input=payload,
                retry=retry, timeout=timeout, sleep_before_run=sleep, created_at=now,
                updated_at=now, start_at=now, root=root, parent=parent, is_sleeping=True,
                sleeping_unique_id=unique_id, idempotency_key=idempotency_key, started_at=now,
                lease_expires_at=now + sleep + timeout,
            )
        start_at = now + sleep
        return ExecutionRecord(
            execution_id=new_execution_id(), task_id=task.id, status=S.READY,
            input=payload or self.encode(input, task.id, "input"), retry=retry, timeout=timeout,
            sleep_before_run=sleep, created_at=now, updated_at=now, start_at=start_at, root=root,
            parent=parent, idempotency_key=idempotency_key, ready_at=start_at,
        )

    async def _get_record(self, execution_id: str) -> ExecutionRecord:
        record = await self._reads.submit(execution_id)
        if record is None:
            raise execution_not_found(execution_id)
        return record

    # ----------------------------------------------------------------------------- public operations

    async def enqueue_task(self, task: Task | str, input: Any = None, *,
                           retry: RetryOptions | None = None, sleep_before_run: float | None = None,
                           timeout: float | None = None,
                           idempotency_key: str | None = None) -> TaskExecutionHandle:
        """Store a new execution of ``task`` and return its handle.

        With ``idempotency_key``, a second enqueue of the same task and key returns the first
        execution's handle and stores nothing.
        """
        if idempotency_key is not None and (not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 255):
            raise ValueError(f"idempotency_key must be a string of 1..255 characters, got {idempotency_key!r}")
        (handle,) = await self._enqueue(task, [input], retry=retry, sleep_before_run=sleep_before_run,
                                        timeout=timeout, idempotency_key=idempotency_key)
        return handle

    async def enqueue_tasks(self, task: Task | str, inputs: Sequence[Any], *,
                            retry: RetryOptions | None = None, sleep_before_run: float | None = None,
                            timeout: float | None = None) -> list[TaskExecutionHandle]:
        """Store one execution of ``task`` per input, all in one atomic storage call.

        The fast way to enqueue many: all or none are stored; handles come back in input order.
        """
        return await self._enqueue(task, inputs, retry=retry, sleep_before_run=sleep_before_run,
                                   timeout=timeout)

    async def _enqueue(self, task: Task | str, inputs: Sequence[Any], *,
                       idempotency_key: str | None = None, **options: Any) -> list[TaskExecutionHandle]:
        self._check_running()
        task = self._task(task)
        now = self.now()
        records = [self.new_record(task, input, now, idempotency_key=idempotency_key, **options)
                   for input in inputs]
        stored = await self.storage.insert_executions(records)
        handles = []
        for record, kept in zip(records, stored):
            if kept.execution_id == record.execution_id:
                self._emit("enqueued", StatusChange(kept.execution_id, kept.task_id, None, kept.status))
                self._note_ready_at(kept.ready_at)
            handles.append(TaskExecutionHandle(self, kept.task_id, kept.execution_id))
        return handles

    async def get_task_execution_handle(self, task: Task | str, execution_id: str) -> TaskExecutionHandle:
        """A handle to an existing execution of ``task``."""
        self._check_running()
        task = self._task(task)
        record = await self._get_record(execution_id)
        if record.task_id != task.id:
            raise DurableExecutionNotFoundError(
                f"Task execution belongs to another task [providedTaskId={task.id}] "
                f"[taskId={record.task_id}] [executionId={execution_id}]"
            )
        return TaskExecutionHandle(self, task.id, execution_id)

    async def wakeup_sleeping_task_execution(self, task: Task | str, unique_id: str, *,
                                             status: str = "completed", output: Any = None,
                                             error: str | None = None) -> TaskExecution:
        """Finish a sleeping execution found by its unique id; returns it as finished.

        An execution that already finished (woken, timed out, cancelled) is returned unchanged.
        """
        self._check_running()
        task = self._task(task)
        if task.kind is not TaskKind.SLEEPING:
            raise DurableExecutionError(f"Task is not a sleeping task [taskId={task.id}]", is_retryable=False)
        (record,) = await self.storage.get_executions_by_sleeping_unique_id([unique_id])
        if record is None:
            raise DurableExecutionNotFoundError(
                f"Sleeping task execution not found [sleepingTaskUniqueId={unique_id}]"
            )
        if record.task_id != task.id:
            raise DurableExecutionNotFoundError(
                f"Sleeping task execution belongs to another task [providedTaskId={task.id}] "
                f"[sleepingTaskId={record.task_id}] [sleepingTaskUniqueId={unique_id}]"
            )
        if record.status.is_finished:
            return self._to_task_execution(record)
        if status == S.COMPLETED:
            wakeup = SleepingWakeup(record.execution_id, S.COMPLETED, output=self.encode(output, task.id, "output"))
        elif status == S.FAILED:
            message = error if isinstance(error, str) and error else "Sleeping task execution failed"
            wakeup = SleepingWakeup(record.execution_id, S.FAILED,
                                    error=ErrorInfo("generic", message, is_retryable=False))
        else:
            raise DurableExecutionError(
                f"Invalid status for sleeping task execution [executionId={record.execution_id}] "
                f"[status={status}]; use 'completed' or 'failed'",
                is_retryable=False,
            )
        self._observe("woken", await self.storage.wake_sleeping_executions([wakeup], self.now()))
        return self._to_task_execution(await self._get_record(record.execution_id))

    async def delete_finished_executions(self, older_than: float, *, batch_size: int = 1000) -> int:
        """Delete every execution tree whose top-level execution finished more than
        ``older_than`` seconds ago; returns how many executions were deleted. Executions of a
        tree that is still active are never deleted."""
        self._check_running()
        _positive("older_than", older_than, allow_zero=True)
        finished_before = self.now() - older_than
        deleted = 0
        while count := await self.storage.delete_finished_executions(finished_before, batch_size):
            deleted += count
        return deleted

    async def _cancel(self, execution_ids: Sequence[str]) -> None:
        self._check_running()
        self._observe("cancelled", await self.storage.cancel_executions(execution_ids, self.now()))

    # ----------------------------------------------------------------------------- observation

    def _emit(self, kind: str, change: StatusChange, error: ErrorInfo | None = None) -> None:
        if not self._plugins.observing():  # an event costs ~3 µs: a tenth of a no-op task
            return
        self._plugins.emit(TaskExecutionEvent(
            kind, change.execution_id, change.task_id, change.previous_status, change.status,
            self.now(), self.executor_id, error,
        ))

    def _observe(self, kind: str, changes: Sequence[StatusChange],
                 stored: Mapping[str, ExecutionRecord] | None = None) -> None:
        """React to stored changes: events, local waiters (given the ``stored`` records where
        known), local runs that lost their lease, and parents that became claimable."""
        for change in changes:
            self._emit("enqueued" if change.previous_status is None else kind, change)
            if change.status.is_finished:
                record = stored.get(change.execution_id) if stored else None
                if record is not None and (record.status is not change.status or record.status is S.CANCELLED):
                    record = None  # not its own commit's change: a cascade in the same batch cancelled it
                self._finished(change.execution_id, record)
                run = self._runs.get(change.execution_id)
                if run is not None:  # e.g. cancelled by a cascade: stop it now, not at next poll
                    run.revoked = True
                    run.scope.cancel()
            elif change.status == change.previous_status or change.status is S.READY:
                self._wake_claimer.set()

    def _finish(self, execution_id: str) -> _Finish:
        finish = self._finishes.get(execution_id)
        if finish is None:
            finish = self._finishes[execution_id] = _Finish()
        return finish

    def _forget_finish(self, execution_id: str, finish: _Finish) -> None:
        if self._finishes.get(execution_id) is finish:
            del self._finishes[execution_id]

    def _finished(self, execution_id: str, record: ExecutionRecord | None) -> None:
        finish = self._finishes.pop(execution_id, None)
        if finish is not None:
            finish.record = record
            finish.event.set()

    def _note_ready_at(self, ready_at: float | None) -> None:
        if ready_at is None:
            return
        if ready_at <= self.now():
            self._wake_claimer.set()
        elif ready_at < self._next_ready_at:
            self._next_ready_at = ready_at
            self._wake_claimer.set()

    # ----------------------------------------------------------------------------- background

    async def _claim_loop(self) -> None:
        assert self._clock is not None and self._run_nursery is not None
        while True:
            self._wake_claimer = trio.Event()
            capacity = self.max_concurrent_task_executions - len(self._runs)
            limit = min(capacity, self.max_task_executions_per_batch)
            claimed: list[ExecutionRecord] = []
            if limit > 0:
                now = self.now()
                if self._next_ready_at <= now:
                    self._next_ready_at = float("inf")
                claimed = await self.storage.claim_executions(self.executor_id, now, limit, self.expire_leeway)
                for record in claimed:
                    self._emit("claimed", StatusChange(record.execution_id, record.task_id,
                                                       S.READY if record.status is S.RUNNING else record.status,
                                                       record.status))
                    run = self._runs[record.execution_id] = _Run(record)
                    self._run_nursery.start_soon(self._execute, run)
            if limit > 0 and len(claimed) == limit:
                await trio.lowlevel.checkpoint()
                continue
            wake_at = min(trio.current_time() + self.poll_interval, self._clock.to_trio(self._next_ready_at))
            with trio.move_on_at(wake_at):
                await self._wake_claimer.wait()

    async def _change_loop(self) -> None:
        """Wake the claimer, and handles waiting for executions that may have finished
        elsewhere, as soon as another process changed the storage (its change feed)."""
        wait_for_changes = self.storage.wait_for_changes  # type: ignore[attr-defined]
        seen = None
        while True:
            try:
                changed = await wait_for_changes(seen)
            except DurableExecutionError as exc:  # polling goes on meanwhile
                log.warning("change feed failed, retrying in %ss: %s", self.poll_interval, exc.message)
                seen = None
                await trio.sleep(self.poll_interval)
                continue
            if seen is not None:
                self._wake_claimer.set()
                self._waiters_stale.set()
            seen = changed

    async def _waiter_refresh_loop(self) -> None:
        """One batched read of the waited executions not running here, per burst of changes
        (at most every ``_WAITER_REFRESH_GAP`` seconds, so a busy neighbour costs little)."""
        while True:
            await self._waiters_stale.wait()
            self._waiters_stale = trio.Event()
            try:
                await self._wake_finished_waiters(skip_running=True)
            except DurableExecutionError as exc:
                log.warning("refreshing waiting handles failed: %s", exc.message)
            await trio.sleep(_WAITER_REFRESH_GAP)

    async def _maintenance_loop(self) -> None:
        while True:
            await trio.sleep(self.poll_interval)
            try:
                await self._maintain()
            except DurableExecutionError as exc:
                log.warning("maintenance failed, retrying in %ss: %s", self.poll_interval, exc.message)

    async def _maintain(self) -> None:
        """Recover expired leases anywhere, and stop local runs whose lease was revoked elsewhere."""
        while True:
            changes = await self.storage.expire_leases(
                self.now(), self.max_lease_expirations, self.max_task_executions_per_batch
            )
            self._observe("expired", changes)
            if len(changes) < self.max_task_executions_per_batch:
                break
        await self._wake_finished_waiters()
        runs = list(self._runs.values())
        if runs:
            revoked = set(await self.storage.find_revoked_leases([r.record.lease for r in runs]))
            # the runs checked, not whatever runs now: an execution may have been re-claimed since
            for run in runs:
                if run.record.execution_id in revoked and not run.hand_back:
                    run.revoked = True
                    run.scope.cancel()

    async def _wake_finished_waiters(self, *, skip_running: bool = False) -> None:
        """Wake handles waiting for executions that finished (or vanished) elsewhere: one
        batched read however many handles wait; ``skip_running`` leaves out the executions this
        executor runs, whose end it sees itself."""
        waited = [i for i in self._finishes if not (skip_running and i in self._runs)]
        for start in range(0, len(waited), 500):
            batch = waited[start:start + 500]
            for execution_id, record in zip(batch, await self.storage.get_executions(batch)):
                if record is None or record.status.is_finished:
                    self._finished(execution_id, record)

    # ----------------------------------------------------------------------------- running

    async def _execute(self, run: _Run) -> None:
        record = run.record
        commit = None
        try:
            with run.scope:
                commit = await self._perform(run)
            if run.scope.cancelled_caught and not run.revoked and not run.hand_back:  # its deadline
                commit = StepContext(self, record, self._tasks.get(record.task_id)).fail(
                    DurableExecutionTimedOutError().to_info()
                )
            if commit is not None and not run.revoked and not run.hand_back:
                await self._commit(commit)
        except Exception:
            log.exception("internal error while running %s %s; its lease will expire and it will be "
                          "retried", record.task_id, record.execution_id)
        finally:
            if run.hand_back and not run.revoked:
                with trio.CancelScope(shield=True):
                    self._observe("released", await self.storage.release_leases([record.lease], self.now()))
            if self._runs.get(record.execution_id) is run:  # a parent may be re-claimed already
                del self._runs[record.execution_id]
            self._capacity_freed.set()
            self._wake_claimer.set()

    async def _commit_batch(self, commits: Sequence[RunCommit]) -> list[None]:
        now = self.now()
        changes = await self.storage.commit_runs(commits, now)
        # what the contract says a commit stores, for the handles waiting on it
        stored = {c.record.execution_id: c.record.copy(lease_expires_at=None, updated_at=now)
                  for c in commits if c.record.execution_id in self._finishes}
        self._observe("committed", changes, stored)
        return [None] * len(commits)

    async def _commit(self, commit: RunCommit) -> None:
        """Commit with the other runs finishing in this tick; one inserting sleeping executions
        goes alone, as the contract asks (a taken unique id fails the whole call)."""
        if not any(record.is_sleeping for record in commit.new_executions):
            await self._commits.submit(commit)
        else:
            try:
                await self._commit_batch([commit])
            except DurableExecutionError as exc:  # a child's unique id is taken: the parent fails instead
                failed = commit.record.copy(status=S.FAILED, error=exc.to_info(), finished_at=self.now(),
                                            ready_at=None)
                await self._commit_batch([RunCommit(failed)])
        for record in commit.new_executions:
            self._note_ready_at(record.ready_at)
        if commit.record.ready_at is not None:
            self._note_ready_at(commit.record.ready_at)

    async def _perform(self, run: _Run) -> RunCommit | None:
        """Do the claimed work and return the commit that records it (None if it was cut off).

        A run's timeout is the deadline of ``run.scope`` while the user's function runs (one
        cancel scope per run, not two); each commit is built after the work, so that its
        ``finished_at`` is when the work finished.
        """
        record = run.record
        task = self._tasks.get(record.task_id)
        step = StepContext(self, record, task)
        if task is None:
            return step.fail(DurableExecutionNotFoundError(f"Task not found [taskId={record.task_id}]").to_info())
        if record.status is not S.RUNNING:
            return await run_step(step)
        try:
            value = self.decode(record.input)
            if task.validator is not None:  # validators are quick: run inline, no thread hop
                value = task.validator(value)
                if inspect.isawaitable(value):
                    value = await value
        except Exception as exc:
            return step.fail(error_info_from_exception(exc, prefix=f"Invalid input to task {task.id}"),
                             retryable=False)
        if task.kind not in (TaskKind.TASK, TaskKind.PARENT):
            return await run_step(step, value)
        ctx = TaskRunContext(
            task_id=task.id, execution_id=record.execution_id, attempt=record.retry_attempts,
            prev_error=record.error, root=record.root, parent=record.parent,
            shutdown_event=self.shutdown_event,
        )
        run.scope.deadline = trio.current_time() + record.timeout  # see _execute: a timeout
        try:
            result = await self.call(task.run, ctx, value)
        except Exception as exc:
            return StepContext(self, record, task).fail(error_info_from_exception(exc))
        finally:
            run.scope.deadline = math.inf
        return await run_step(StepContext(self, record, task), value, Outcome(result))

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call user code: coroutine functions directly, plain functions in a worker thread."""
        if _is_async(fn):
            return await fn(*args)
        return await trio.to_thread.run_sync(functools.partial(fn, *args), abandon_on_cancel=True)


@functools.cache
def _is_async_cached(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def _is_async(fn: Callable[..., Any]) -> bool:
    try:
        return _is_async_cached(fn)
    except TypeError:  # unhashable callable
        return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def _check_unique_id(task_id: str, unique_id: Any) -> None:
    if not isinstance(unique_id, str):
        raise DurableExecutionError(
            f"Input must be a unique id string for sleeping task [taskId={task_id}] "
            f"[input={type(unique_id).__name__}]",
            is_retryable=False,
        )
    if not unique_id:
        raise DurableExecutionError(
            f"A non-empty unique id string is required for sleeping task [taskId={task_id}]",
            is_retryable=False,
        )
    if len(unique_id) > 255:
        raise DurableExecutionError(
            f"The unique id string must be shorter than 256 characters for sleeping task "
            f"[taskId={task_id}] [inputLength={len(unique_id)}]",
            is_retryable=False,
        )
