"""Defining tasks: the decorators and functions that register each task kind on an executor."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, overload

from .errors import DurableExecutionError, DurableExecutionNotFoundError
from .models import RetryOptions
from .storage.contract import DEFAULT_QUEUE
from .tasks import Task, TaskKind, check_max_concurrency, check_priority, check_rate_limit, check_queue, check_retry, check_sleep_before_run, check_task_id, check_timeout

RunFunction = Callable[..., Any]
"""``run(ctx, input)``: ``async def``, or a plain ``def`` run in a worker thread."""

InputValidator = Callable[[Any], Any]
"""Takes the raw input and returns the validated input, raising an error naming the bad field."""


class ValidatorSource(Protocol):
    """Where ``input_schema`` objects the core does not know become validators (the plugins)."""

    def input_validator(self, schema: Any, task_id: str) -> InputValidator | None: ...


class TaskDefinitions:
    """The tasks of one executor, by id, and the ways to define them.

    Every definition is checked when it is made (ids, timeouts, retry options, finalize tasks),
    so a mistake raises at import time, naming the field, instead of when the task first runs.
    """

    def __init__(self, validators: ValidatorSource):
        self._validators = validators
        self._tasks: dict[str, Task] = {}
        self._task_ids: frozenset[str] = frozenset()
        self._task_queues: frozenset[str] = frozenset()
        self._limits: dict[str, int] = {}
        self._rates: dict[str, tuple[int, float]] = {}
        self._queues: frozenset[str] | None = None
        self._sealed = False

    @property
    def tasks(self) -> dict[str, Task]:
        """The tasks defined on this executor, by id."""
        return dict(self._tasks)

    @property
    def task_ids(self) -> frozenset[str]:
        """The ids of the tasks defined here: what this executor claims (``routing``)."""
        return self._task_ids

    @property
    def limits(self) -> dict[str, int]:
        """``max_concurrency`` of the tasks defined here that have one, by task id."""
        return self._limits

    @property
    def rates(self) -> dict[str, tuple[int, float]]:
        """``rate_limit`` of the tasks defined here that have one, by task id: (count, period in seconds)."""
        return self._rates

    @property
    def queues(self) -> frozenset[str]:
        """The queues this executor claims from: those given to ``serve_queues`` (``durable
        worker --queue``), else every queue its tasks use."""
        return self._task_queues if self._queues is None else self._queues

    def serve_queues(self, queues: Iterable[str] | None) -> None:
        """Claim only from ``queues`` (None: from every queue the tasks defined here use)."""
        self._queues = None if queues is None else frozenset(check_queue("the worker", queue) for queue in queues)

    def get_task(self, task: Task | str) -> Task:
        """The defined task with ``task``'s id; ``DurableExecutionNotFoundError`` if there is none."""
        task_id = task.id if isinstance(task, Task) else task
        found = self._tasks.get(task_id)
        if found is None:
            raise DurableExecutionNotFoundError(f"Task not found [taskId={task_id}]")
        return found

    def find_task(self, task_id: str) -> Task | None:
        """The defined task with id ``task_id``, if there is one."""
        return self._tasks.get(task_id)

    def seal(self) -> None:
        """Refuse further definitions: the executor has shut down."""
        self._sealed = True

    # ----------------------------------------------------------------------------- the task kinds

    @overload
    def task(self, *, id: str, timeout: float, retry: RetryOptions | None = None,
             sleep_before_run: float = 0.0, input_schema: Any = None,
             validate_input: InputValidator | None = None, queue: str = DEFAULT_QUEUE, priority: int = 0, max_concurrency: int | None = None, rate_limit: str | None = None,
             run: None = None) -> Callable[[RunFunction], Task]: ...

    @overload
    def task(self, *, id: str, timeout: float, retry: RetryOptions | None = None,
             sleep_before_run: float = 0.0, input_schema: Any = None,
             validate_input: InputValidator | None = None, queue: str = DEFAULT_QUEUE, priority: int = 0, max_concurrency: int | None = None, rate_limit: str | None = None,
             run: RunFunction) -> Task: ...

    def task(self, *, id: str, timeout: float, retry: RetryOptions | None = None,
             sleep_before_run: float = 0.0, input_schema: Any = None,
             validate_input: InputValidator | None = None, queue: str = DEFAULT_QUEUE, priority: int = 0, max_concurrency: int | None = None, rate_limit: str | None = None,
             run: RunFunction | None = None) -> Task | Callable[[RunFunction], Task]:
        """Define a task. With ``run=`` returns the ``Task``; without, a decorator that does.

        ``run(ctx, input)`` may be ``async def`` or a plain ``def`` (run in a worker thread).
        ``queue`` is where its executions wait unless an enqueue names another; of the due
        executions a worker claims, those of higher ``priority`` (0 to 1,000,000) come first.
        ``max_concurrency`` caps how many of its executions run at once across every executor
        on the storage (which must have ``Capabilities.concurrency_limits``); ``rate_limit``
        ("100/m": N per s, m, h or d) how many may start per sliding period (``Capabilities.rate_limits``).
        """
        def define(fn: RunFunction) -> Task:
            return self._define(TaskKind.TASK, fn, id=id, timeout=timeout, retry=retry,
                                sleep_before_run=sleep_before_run, input_schema=input_schema,
                                validate_input=validate_input, queue=queue, priority=priority, max_concurrency=max_concurrency, rate_limit=rate_limit)

        return define(run) if run is not None else define

    @overload
    def parent_task(self, *, id: str, timeout: float, finalize: Task | Callable[..., Any] | None = None,
                    retry: RetryOptions | None = None, sleep_before_run: float = 0.0,
                    input_schema: Any = None, validate_input: InputValidator | None = None,
                    queue: str = DEFAULT_QUEUE, priority: int = 0, max_concurrency: int | None = None, rate_limit: str | None = None, run: None = None) -> Callable[[RunFunction], Task]: ...

    @overload
    def parent_task(self, *, id: str, timeout: float, finalize: Task | Callable[..., Any] | None = None,
                    retry: RetryOptions | None = None, sleep_before_run: float = 0.0,
                    input_schema: Any = None, validate_input: InputValidator | None = None,
                    queue: str = DEFAULT_QUEUE, priority: int = 0, max_concurrency: int | None = None, rate_limit: str | None = None, run: RunFunction) -> Task: ...

    def parent_task(self, *, id: str, timeout: float, finalize: Task | Callable[..., Any] | None = None,
                    retry: RetryOptions | None = None, sleep_before_run: float = 0.0,
                    input_schema: Any = None, validate_input: InputValidator | None = None,
                    queue: str = DEFAULT_QUEUE, priority: int = 0, max_concurrency: int | None = None, rate_limit: str | None = None, run: RunFunction | None = None
                    ) -> Task | Callable[[RunFunction], Task]:
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

        def define(fn: RunFunction) -> Task:
            return self._define(TaskKind.PARENT, fn, id=id, timeout=timeout, retry=retry,
                                sleep_before_run=sleep_before_run, input_schema=input_schema,
                                validate_input=validate_input, finalize=finalize, queue=queue,
                                priority=priority, max_concurrency=max_concurrency, rate_limit=rate_limit)

        return define(run) if run is not None else define

    def sleeping_task(self, *, id: str, timeout: float) -> Task:
        """Define a task finished from outside by ``wakeup_sleeping_task_execution``; its enqueue
        input is a unique id (1..255 chars) that the waker uses."""
        return self._define(TaskKind.SLEEPING, None, id=id, timeout=timeout)

    def sequential_tasks(self, id: str, tasks: Sequence[Task], *, timeout: float = 30.0,
                         queue: str = DEFAULT_QUEUE, priority: int = 0, max_concurrency: int | None = None, rate_limit: str | None = None) -> Task:
        """Define a task running ``tasks`` one after another, each output the next one's input."""
        steps = tuple(tasks)
        if not steps:
            raise ValueError(f"Sequential task {id}: No tasks provided")
        for step in steps:
            self._check_defined(id, step)
        return self._define(TaskKind.SEQUENTIAL, None, id=id, timeout=timeout, steps=steps, queue=queue,
                            priority=priority, max_concurrency=max_concurrency, rate_limit=rate_limit)

    def looping_task(self, id: str, iteration_task: Task, max_attempts: int,
                     sleep_before_run: float | Callable[[int], float] | None = None, *,
                     timeout: float = 30.0, queue: str = DEFAULT_QUEUE, priority: int = 0, max_concurrency: int | None = None, rate_limit: str | None = None) -> Task:
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
        return self._define(TaskKind.LOOPING, None, id=id, timeout=timeout, steps=(iteration_task,),
                            max_attempts=max_attempts, iteration_sleep=sleep_before_run, queue=queue,
                            priority=priority, max_concurrency=max_concurrency, rate_limit=rate_limit)

    # ----------------------------------------------------------------------------- checking

    def _define(self, kind: TaskKind, run: RunFunction | None, *, id: str, timeout: float,
                retry: RetryOptions | None = None, sleep_before_run: float | None = 0.0,
                input_schema: Any = None, validate_input: InputValidator | None = None,
                queue: str = DEFAULT_QUEUE, priority: int = 0, max_concurrency: int | None = None, rate_limit: str | None = None, **extra: Any) -> Task:
        check_task_id(id)
        task = Task(
            id=id,
            kind=kind,
            timeout=check_timeout(id, timeout),
            retry=check_retry(id, retry),
            sleep_before_run=check_sleep_before_run(id, sleep_before_run),
            run=run,
            validator=self._validator(id, input_schema, validate_input),
            queue=check_queue(f"task {id}", queue),
            priority=check_priority(f"task {id}", priority),
            max_concurrency=check_max_concurrency(f"task {id}", max_concurrency),
            rate_limit=check_rate_limit(f"task {id}", rate_limit),
            **extra,
        )
        return self._add(task)

    def include(self, other: TaskDefinitions) -> None:
        """Define here every task ``other`` defines: the same ``Task`` objects, so parents keep
        their children. For running an application's tasks on another storage, as tests do."""
        for task in other.tasks.values():
            self._add(task)

    def _add(self, task: Task) -> Task:
        if self._sealed:
            raise DurableExecutionError("Durable executor shutdown", is_retryable=False)
        if task.id in self._tasks:
            raise ValueError(f"Task with given id already exists [taskId={task.id}]")
        self._tasks[task.id] = task
        self._task_ids = frozenset(self._tasks)
        self._limits = {t.id: t.max_concurrency for t in self._tasks.values() if t.max_concurrency is not None}
        self._rates = {t.id: t.rate_limit for t in self._tasks.values() if t.rate_limit is not None}
        self._task_queues = frozenset(task.queue for task in self._tasks.values() if task.kind is not TaskKind.SLEEPING)
        return task

    def _validator(self, task_id: str, input_schema: Any, validate_input: InputValidator | None) -> InputValidator | None:
        if input_schema is not None and validate_input is not None:
            raise ValueError(f"Task {task_id}: give input_schema or validate_input, not both")
        if validate_input is not None:
            if not callable(validate_input):
                raise ValueError(f"Task {task_id}: validate_input must be callable")
            return validate_input
        if input_schema is None:
            return None
        validator = self._validators.input_validator(input_schema, task_id)
        if validator is None:
            raise ValueError(
                f"Task {task_id}: input_schema {input_schema!r} is not a dataclass, a pydantic "
                "model or anything an installed validation plugin recognises"
            )
        return validator

    def _check_defined(self, owner: str, task: object) -> None:
        if not isinstance(task, Task) or self._tasks.get(task.id) is not task:
            raise ValueError(f"Task {owner}: {task!r} is not a task defined on this executor")
