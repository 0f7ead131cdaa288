"""``DurableExecutor``: the facade users hold. It defines tasks, starts and stops the engine, and
offers the public operations; the work itself is done by the modules it wires together (see
docs/architecture.md)."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import trio

from .config import DEFAULT_SERIALIZER, DEFAULT_STORAGE, DEFAULT_STORAGE_OPTIONS, load_config
from .definitions import TaskDefinitions
from .engine import Engine
from .errors import DurableExecutionError, DurableExecutionNotFoundError
from .handles import TaskExecutionHandle
from .ids import new_id
from .metrics import MeteredStorage, StorageOperationMetrics
from .models import RetryOptions, TaskExecution
from .options import ExecutorOptions, OptionView
from .payloads import PayloadCodec
from .records import new_record
from .retention import check_finished_after, retention_loop
from .schedules import Schedule, make_schedule, pause_schedule, paused_schedules, resume_schedule, schedule_loop
from .runner import Runner
from .serialization import Serializer
from .storage.contract import DEFAULT_QUEUE, QUEUES_STORAGE_API, Payload, Storage
from .storage.opening import open_storage
from .tasks import Task, TaskKind, check_task_id

if TYPE_CHECKING:
    from .plugins.manager import PluginRegistry

_MiB = 1024 * 1024

State = Literal["new", "starting", "running", "stopping", "stopped"]

MAX_IDEMPOTENCY_KEY_LENGTH = 255


def check_idempotency_key(key: object) -> None:
    """Raise ``ValueError`` unless ``key`` is None or a string of 1..255 characters, which every
    storage can index."""
    if key is None:
        return
    if not isinstance(key, str):
        raise ValueError(f"idempotency_key must be a string of 1..{MAX_IDEMPOTENCY_KEY_LENGTH} characters, got {key!r}")
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ValueError(f"idempotency_key must be a string of 1..{MAX_IDEMPOTENCY_KEY_LENGTH} characters, "
                         f"got {len(key)} characters")


class DurableExecutor(TaskDefinitions):
    """Runs durable tasks on a storage shared with any number of other executors.

    ``storage`` is a storage object or the name of an installed storage plugin, opened with
    ``storage_options`` when the executor starts; by default the embedded SQLite storage in
    ``./durable.db``. Use ``async with executor:``; leaving the block shuts down gracefully.
    With ``max_concurrent_task_executions=0`` the executor is a client: it enqueues, waits,
    cancels and wakes, but never runs a task. With ``retention_finished_after`` (seconds, or a
    duration such as ``"7d"``) a worker deletes, in its turn, trees finished longer ago (see
    ``durable_core.retention``). The tuning options are declared, with their bounds
    and help, in ``ExecutorOptions`` (``executor.options``); each can be read as an attribute too.
    """

    max_concurrent_task_executions: OptionView[int] = OptionView()
    max_task_executions_per_batch: OptionView[int] = OptionView()
    expire_leeway: OptionView[float] = OptionView()
    poll_interval: OptionView[float] = OptionView()
    heartbeat_interval: OptionView[float] = OptionView()
    lease_duration: OptionView[float] = OptionView()
    shutdown_timeout: OptionView[float] = OptionView()
    max_lease_expirations: OptionView[int] = OptionView()
    max_children_per_task_execution: OptionView[int] = OptionView()
    max_serialized_input_size: OptionView[int] = OptionView()
    max_serialized_output_size: OptionView[int] = OptionView()

    def __init__(
        self,
        storage: Storage | str | None = None,
        *,
        storage_options: dict[str, Any] | None = None,
        serializer: Serializer | str | None = None,
        max_concurrent_task_executions: int = 1000,
        max_task_executions_per_batch: int = 100,
        expire_leeway: float = 300.0,
        poll_interval: float = 0.5,
        heartbeat_interval: float = 3.0,
        lease_duration: float = 10.0,
        shutdown_timeout: float = 15.0,
        max_lease_expirations: int = 10,
        max_children_per_task_execution: int = 1000,
        max_serialized_input_size: int = _MiB,
        max_serialized_output_size: int = _MiB,
        retention_finished_after: float | str | None = None,
        plugins: PluginRegistry | None = None,
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
        self.options = ExecutorOptions(  # in declaration order, as the signature lists them
            max_concurrent_task_executions, max_task_executions_per_batch, expire_leeway, poll_interval,
            heartbeat_interval, lease_duration, shutdown_timeout, max_lease_expirations, max_children_per_task_execution,
            max_serialized_input_size, max_serialized_output_size,
        )
        self.retention_finished_after = check_finished_after(retention_finished_after)
        """Seconds after which this worker, in its turn, deletes finished trees (``[retention]
        finished_after``; a duration such as ``"7d"`` is accepted too); None keeps them."""
        self._plugins = plugins if plugins is not None else default_registry()
        super().__init__(self._plugins)
        self.executor_id = new_id("de_", 8)
        self.shutdown_event = trio.Event()
        self._storage_spec = storage
        self._storage_options = dict(storage_options or {})
        self.codec = PayloadCodec(
            self._plugins.serializer(serializer or DEFAULT_SERIALIZER)
            if serializer is None or isinstance(serializer, str)
            else serializer,
            self._plugins.serializer,
            max_input_size=self.options.max_serialized_input_size,
            max_output_size=self.options.max_serialized_output_size,
        )
        """How this executor encodes and decodes payloads."""
        self._state: State = "new"
        self._engine: Engine | None = None
        self._runner: Runner | None = None
        self._exit_stack: AsyncExitStack | None = None
        self._schedules: dict[str, Schedule] = {}

    @classmethod
    def from_config(cls, path: str | None = None, **overrides: Any) -> DurableExecutor:
        """An executor configured by ``durable.toml`` (or ``[tool.durable]`` in pyproject.toml,
        ``DURABLE_CONFIG``, or ``path``); keyword ``overrides`` win over the file."""
        config = load_config(path)
        kwargs = config.executor_kwargs(**overrides)
        try:
            executor = cls(**kwargs)
            for schedule in config.schedules:
                executor.schedule(schedule.task_id, cron=schedule.cron, input=schedule.input,
                                  timezone=schedule.timezone, id=schedule.id, catch_up=schedule.catch_up)
        except ValueError as exc:
            raise config.error(exc) from None
        if kwargs.get("storage_options") == config.storage.options:  # the file's: named with it when wrong
            from .plugins.manager import default_registry

            try:
                declared = (overrides.get("plugins") or default_registry()).storage_options(config.storage.name)
            except DurableExecutionNotFoundError:  # not installed: opening it says how to install it
                declared = None
            if declared is not None:
                config.check_storage_options(declared)
        return executor

    # ----------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> DurableExecutor:
        if self._state != "new":
            raise DurableExecutionError("A durable executor can be started only once", is_retryable=False)
        for schedule in self._schedules.values():  # a task named by a string is defined by now
            if self.options.max_concurrent_task_executions and self.find_task(schedule.task_id) is None:
                raise ValueError(f"Invalid schedule {schedule.id!r}: task {schedule.task_id!r} is not defined "
                                 f"on this executor; define it before the executor starts")
        self._state = "starting"
        stack = AsyncExitStack()
        try:
            storage = self._storage_spec
            if isinstance(storage, str):
                storage = await stack.enter_async_context(
                    open_storage(storage, plugins=self._plugins, **self._storage_options)
                )
            engine = self._engine = Engine(
                executor_id=self.executor_id, options=self.options, storage=MeteredStorage(storage),
                codec=self.codec, get_task=self.get_task, observers=self._plugins,
                shutdown_event=self.shutdown_event,
            )
            self._check_limits(storage)
            run_nursery = await stack.enter_async_context(trio.open_nursery())
            self._runner = Runner(engine, run_nursery, self, self._worker_loops(engine))
            await run_nursery.start(self._runner.serve)
            await stack.enter_async_context(self._plugin_work())
        except BaseException:  # Ctrl-C or a fault while starting: stop what started, hand back its claims
            if self._runner is not None:
                with trio.CancelScope(shield=True):
                    await self._runner.drain(0)
            await stack.aclose()
            self._stopped()
            raise
        self._exit_stack = stack
        self._state = "running"
        return self

    def _check_limits(self, storage: Storage) -> None:
        """Refuse to run a task with ``max_concurrency`` or ``rate_limit`` on a storage that cannot enforce it."""
        capabilities = storage.capabilities
        for field, tasks, capability in (("max_concurrency", self.limits, "concurrency_limits"),
                                         ("rate_limit", self.rates, "rate_limits")):
            if tasks and self.options.max_concurrent_task_executions and not (
                    getattr(capabilities, capability) and capabilities.routing):
                raise DurableExecutionError(
                    f"Task {min(tasks)} has {field}, which storage {type(storage).__name__} cannot enforce "
                    f"(it lacks Capabilities.{capability}): use a storage that has it, or remove the limit",
                    is_retryable=False)

    def _worker_loops(self, engine: Engine) -> list[Callable[[], Awaitable[None]]]:
        """What this executor runs beside its claim loop if it runs tasks: retention, schedules."""
        loops: list[Callable[[], Awaitable[None]]] = []
        if self.retention_finished_after is not None:
            loops.append(functools.partial(retention_loop, engine, self.retention_finished_after))
        if self._schedules:
            loops.append(functools.partial(schedule_loop, list(self._schedules.values()), engine.now,
                                           engine.clock.to_trio, self._enqueue_tick, self._paused,
                                           self.retention_finished_after))
        return loops

    async def _enqueue_tick(self, schedule: Schedule, tick: float) -> None:
        key = schedule.idempotency_key(tick)
        await self._running().faults.call(f"enqueuing {key}", lambda: self.enqueue_task(
            schedule.task_id, schedule.input, idempotency_key=key))

    async def _paused(self) -> set[str]:
        engine = self._running()
        return set(await engine.faults.call("reading paused schedules",
                                            lambda: paused_schedules(engine.storage)))

    def schedule(self, task: Task | str, *, cron: str, input: Any = None, timezone: str = "UTC",
                 id: str | None = None, catch_up: str = "latest") -> Schedule:
        """Enqueue ``task`` with ``input`` at every tick of ``cron`` (five fields) in ``timezone``.

        Each tick is enqueued once however many workers define the schedule (its idempotency key
        is the schedule ``id``, by default the task id, and the tick). A worker starting enqueues
        the latest tick missed while none ran, once (``catch_up="none"`` skips it). An invalid
        cron expression, time zone or input is refused here, naming it. See docs/tasks.md.
        """
        if self._state != "new":
            raise DurableExecutionError("Define schedules before the executor starts", is_retryable=False)
        task_id = self.get_task(task).id if isinstance(task, Task) else check_task_id(task)
        made = make_schedule(task_id, cron, input, timezone, id=id, catch_up=catch_up)
        if made.id in self._schedules:
            raise ValueError(f"Invalid schedule {made.id!r}: a schedule with this id exists; give this one an id=")
        self.codec.encode(input, task_id, "input")  # what cannot be stored is refused now, not at the tick
        self._schedules[made.id] = made
        return made

    @property
    def schedules(self) -> dict[str, Schedule]:
        """The schedules defined on this executor, by id."""
        return dict(self._schedules)

    async def pause_schedule(self, schedule_id: str) -> bool:
        """Pause the schedule ``schedule_id`` on every worker of the storage, until resumed (also
        across restarts): its ticks pass without an execution. False if it was paused already."""
        engine = self._running()
        return await pause_schedule(engine.storage, self.codec, schedule_id, engine.now())

    async def resume_schedule(self, schedule_id: str) -> bool:
        """Resume a paused schedule from its next tick (the ticks of the pause are not caught up);
        False if it was not paused."""
        engine = self._running()
        return await resume_schedule(engine.storage, self.codec, schedule_id, engine.now())

    async def paused_schedules(self) -> dict[str, float]:
        """The paused schedules of the storage (defined here or not), each with when it was paused."""
        return await paused_schedules(self._running().storage)

    @asynccontextmanager
    async def _plugin_work(self) -> AsyncIterator[None]:
        """What plugins run beside this executor (``durable_executor_running``), until shutdown."""
        work = self._plugins.executor_running(self)
        if not work:
            yield
            return
        async with trio.open_nursery() as nursery:
            for name, function in work:
                nursery.start_soon(_logged, name, function)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()

    @property
    def plugins(self) -> PluginRegistry:
        """The plugins this executor uses (its ``plugins=``, else the process's)."""
        return self._plugins

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop claiming, give running tasks ``shutdown_timeout`` seconds, then hand the rest
        back to ``ready`` at once. Idempotent."""
        if self._state in ("new", "stopped"):
            self._stopped()
            return
        if self._state == "stopping":
            return
        self._state = "stopping"
        assert self._engine is not None and self._runner is not None and self._exit_stack is not None
        self._engine.stopping = True
        self.shutdown_event.set()
        try:
            await self._runner.drain(self.options.shutdown_timeout)
        finally:
            try:
                await self._exit_stack.aclose()
            finally:
                self._stopped()

    def cut_shutdown_short(self) -> None:
        """Cut a graceful shutdown short: running tasks are cancelled now instead of after
        ``shutdown_timeout``, and their executions handed back to ``ready`` at once, their attempt
        not counted. Called before the shutdown starts, it gives them no time at all. ``durable
        worker`` calls it on a second SIGINT or SIGTERM."""
        if self._runner is not None:
            self._runner.cut_grace_short()

    def _stopped(self) -> None:
        self._state = "stopped"
        self.seal()

    def _running(self) -> Engine:
        """The engine, if the executor is running; else the error that says why not."""
        if self._state == "running" and self._engine is not None:
            return self._engine
        if self._state in ("stopping", "stopped"):
            raise DurableExecutionError("Durable executor shutdown", is_retryable=False)
        raise DurableExecutionError(
            "Durable executor is not running; use `async with executor:`", is_retryable=False
        )

    @property
    def engine(self) -> Engine:
        """The running engine: what in-process clients (``durable_core.client``) work through."""
        return self._running()

    @property
    def storage(self) -> Storage:
        """The storage, once the executor has started."""
        if self._engine is None:
            raise DurableExecutionError(
                "Durable executor is not running; use `async with executor:`", is_retryable=False
            )
        return self._engine.storage

    @property
    def running_task_execution_ids(self) -> frozenset[str]:
        return frozenset(self._engine.runs) if self._engine else frozenset()

    @property
    def running_task_executions_count(self) -> int:
        return len(self._engine.runs) if self._engine else 0

    def get_storage_metrics(self) -> dict[str, StorageOperationMetrics]:
        """Per storage operation: count, min, max, p50, p90 and p95 durations in seconds."""
        storage = self._engine.storage if self._engine else None
        return storage.metrics() if isinstance(storage, MeteredStorage) else {}

    def now(self) -> float:
        """The engine's clock (seconds since the epoch; virtual under ``trio.testing.MockClock``)."""
        if self._engine is None:
            raise DurableExecutionError(
                "Durable executor is not running; use `async with executor:`", is_retryable=False
            )
        return self._engine.now()

    def encode(self, value: Any, task_id: str, what: Literal["input", "output"]) -> Payload:
        """``value`` as this executor stores it as the ``what`` of ``task_id``."""
        return self.codec.encode(value, task_id, what)

    def decode(self, payload: Payload) -> Any:
        """The value of a stored payload, by whichever serializer wrote it."""
        return self.codec.decode(payload)

    # ----------------------------------------------------------------------------- operations

    async def enqueue_task(self, task: Task | str, input: Any = None, *,
                           retry: RetryOptions | None = None, sleep_before_run: float | None = None,
                           timeout: float | None = None,
                           idempotency_key: str | None = None, queue: str | None = None,
                           priority: int | None = None, delay: float | None = None,
                           at: datetime | None = None) -> TaskExecutionHandle:
        """Store a new execution of ``task`` and return its handle.

        With ``idempotency_key``, a second enqueue of the same task and key returns the first
        execution's handle and stores nothing. ``queue`` and ``priority`` override the task's.
        ``delay`` (seconds) or ``at`` (a timezone-aware datetime) makes it due later; the task's
        ``sleep_before_run`` follows.
        """
        check_idempotency_key(idempotency_key)
        (handle,) = await self._enqueue(task, [input], retry=retry, sleep_before_run=sleep_before_run,
                                        timeout=timeout, idempotency_key=idempotency_key, queue=queue,
                                        priority=priority, delay=delay, at=at)
        return handle

    async def enqueue_tasks(self, task: Task | str, inputs: Sequence[Any], *,
                            retry: RetryOptions | None = None, sleep_before_run: float | None = None,
                            timeout: float | None = None, queue: str | None = None,
                            priority: int | None = None, delay: float | None = None,
                            at: datetime | None = None) -> list[TaskExecutionHandle]:
        """Store one execution of ``task`` per input, all in one atomic storage call.

        The fast way to enqueue many: all or none are stored; handles come back in input order.
        """
        return await self._enqueue(task, inputs, retry=retry, sleep_before_run=sleep_before_run,
                                   timeout=timeout, queue=queue, priority=priority, delay=delay, at=at)

    async def _enqueue(self, task: Task | str, inputs: Sequence[Any], *, retry: RetryOptions | None,
                       sleep_before_run: float | None, timeout: float | None,
                       idempotency_key: str | None = None, queue: str | None = None,
                       priority: int | None = None, delay: float | None = None,
                       at: datetime | None = None) -> list[TaskExecutionHandle]:
        engine = self._running()
        task = self.get_task(task)
        now = engine.now()
        context = self._plugins.execution_context()
        records = [new_record(task, input, now, engine.codec, retry=retry, sleep_before_run=sleep_before_run,
                              timeout=timeout, idempotency_key=idempotency_key, context=context, queue=queue,
                              priority=priority, delay=delay, at=at)
                   for input in inputs]
        if records and records[0].queue != DEFAULT_QUEUE and engine.storage.storage_api < QUEUES_STORAGE_API:
            raise DurableExecutionError(
                f"Cannot enqueue {task.id} on queue {records[0].queue!r}: the storage implements storage API "
                f"{engine.storage.storage_api}, which stores no queues; upgrade it, or use the default queue",
                is_retryable=False)
        if task.max_concurrency is None and task.rate_limit is None:  # a limited task's slots are the storage's to count
            records = engine.claim_on_insert(records, self.queues)
        return [TaskExecutionHandle(engine, kept.task_id, kept.execution_id) for kept in await engine.insert(records)]

    async def get_task_execution_handle(self, task: Task | str, execution_id: str) -> TaskExecutionHandle:
        """A handle to an existing execution of ``task``."""
        engine = self._running()
        task = self.get_task(task)
        record = await engine.get_record(execution_id)
        if record.task_id != task.id:
            raise DurableExecutionNotFoundError(
                f"Task execution belongs to another task [providedTaskId={task.id}] "
                f"[taskId={record.task_id}] [executionId={execution_id}]"
            )
        return TaskExecutionHandle(engine, task.id, execution_id)

    async def wakeup_sleeping_task_execution(self, task: Task | str, unique_id: str, *,
                                             status: str = "completed", output: Any = None,
                                             error: str | None = None) -> TaskExecution:
        """Finish a sleeping execution found by its unique id; returns it as finished.

        An execution that already finished (woken, timed out, cancelled) is returned unchanged.
        """
        engine = self._running()
        task = self.get_task(task)
        if task.kind is not TaskKind.SLEEPING:
            raise DurableExecutionError(f"Task is not a sleeping task [taskId={task.id}]", is_retryable=False)
        return await engine.wake_sleeping(task.id, unique_id, status=status, output=output, error=error)

    async def delete_finished_executions(self, older_than: float, *, batch_size: int = 1000) -> int:
        """Delete every execution tree whose top-level execution finished more than
        ``older_than`` seconds ago; returns how many executions were deleted. Executions of a
        tree that is still active are never deleted."""
        engine = self._running()
        if isinstance(older_than, bool) or not isinstance(older_than, int | float) or not older_than >= 0:
            raise ValueError(f"Invalid executor option older_than: expected a number >= 0, got {older_than!r}")
        finished_before = engine.now() - older_than
        deleted = 0
        while count := await engine.storage.delete_finished_executions(finished_before, batch_size):
            deleted += count
        return deleted


async def _logged(name: str, work: Callable[[], Awaitable[None]]) -> None:
    """A plugin's work beside an executor (``durable_executor_running``): if it fails, the
    executor goes on without it."""
    try:
        await work()
    except Exception:
        logging.getLogger("durable.plugins").exception("plugin %r failed beside the executor", name)
