"""A Hypothesis state machine that drives the storage and a plain model with the same random
operations and checks, after every step, that they agree (the zarr pattern).

``ContractModel`` (``model.py``) is the contract written as plainly as possible, its transitions
computed by ``durable_core.storage.transitions``. Where the contract leaves a choice to the
backend (which of several records with the same ``ready_at`` a limited claim takes, which trees a
limited delete takes) the machine checks that the backend's choice is allowed and lets the model
follow it.

The operations the machine sends are the ones the engine sends: commits made from claimed
records by the engine's own rules (run, retry, spawn children or a finalize, finish), stale
commits from lost leases, hand-backs, expiry, cancellation, wake-ups, retention.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant
from hypothesis.stateful import precondition, rule, run_state_machine_as_test

from durable_core.errors import ErrorInfo
from durable_core.models import ExecutionRef, ParentRef, RetryOptions
from durable_core.status import ALL_TASK_EXECUTION_STATUSES
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import DuplicateSleepingTaskUniqueIdError, ExecutionRecord, ExecutorInfo, Lease, Payload
from durable_core.storage import RunCommit, SleepingWakeup, StatusChange, Storage, StorageError, list_key

from .model import ContractModel, difference
from .opening import StorageOpener
from .records import summarize

_FAR = 1e15
_TIMES = st.sampled_from([0.0, 0.5, 1.0, 3.0, 7.0, 20.0])
_UNIQUE_IDS = st.sampled_from([f"u{n}" for n in range(10)])
_ERRORS = st.sampled_from([
    ErrorInfo("generic", "boom", is_retryable=True),
    ErrorInfo("generic", "fatal ✗", is_retryable=False, is_internal=True),
    ErrorInfo("timed_out", "Task execution timed out", is_retryable=True),
    ErrorInfo("cancelled", "Task execution cancelled", is_retryable=False),
])
_OUTPUTS = st.sampled_from([Payload("json", b'"ok"'), Payload("cbor", bytes(range(8))), Payload("json", b"")])


class StorageMachine(RuleBasedStateMachine):
    """Drives ``storage`` (set on a subclass) from a worker thread through ``trio.from_thread``."""

    storage: ClassVar[Storage]

    def __init__(self) -> None:
        super().__init__()
        self.model = ContractModel()
        self.now = 1000.0
        self.counter = itertools.count()
        self.leases: list[Lease] = []
        self.known_ids: list[str] = []
        self._reset()

    # -------------------------------------------------------------------------------- plumbing

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return trio.from_thread.run(functools.partial(getattr(self.storage, name), *args, **kwargs))

    def _reset(self) -> None:
        """Empty the storage for this example, through the contract (every check starts empty)."""
        leftovers = [r.execution_id for r in self.call("list_executions", limit=1_000_000)]
        if leftovers:
            self.call("cancel_executions", leftovers, _FAR / 10)
            self.call("delete_finished_executions", _FAR, 1_000_000)
        assert self.call("list_executions", limit=1) == [], "could not empty the storage with cancel and delete"

    def _new_id(self) -> str:
        execution_id = f"te_{next(self.counter):03}"
        self.known_ids.append(execution_id)
        return execution_id

    def _timeout(self, execution_id: str) -> float:
        # distinct per record, so that no two leases end at the same time: expiry order is then
        # determined, and so is which cascade happens first
        return 5.0 + int(execution_id[3:]) / 1024

    def _record(self, *, parent: ExecutionRecord | None = None, index: int = 0, is_finalize: bool = False,
                sleeping_id: str | None = None, delay: float = 0.0, task_id: str = "a",
                idempotency_key: str | None = None, execution_id: str | None = None) -> ExecutionRecord:
        execution_id = execution_id or self._new_id()
        now, timeout = self.now, self._timeout(execution_id)
        root = parent_ref = None
        if parent is not None:
            root = parent.root or ExecutionRef(parent.task_id, parent.execution_id)
            parent_ref = ParentRef(parent.task_id, parent.execution_id, index, is_finalize)
        common: dict[str, Any] = dict(
            execution_id=execution_id, task_id=task_id, input=Payload("json", execution_id.encode()),
            retry=RetryOptions(max_attempts=2), timeout=timeout, sleep_before_run=delay, created_at=now,
            updated_at=now, root=root, parent=parent_ref, idempotency_key=idempotency_key,
        )
        if sleeping_id is not None:
            return ExecutionRecord(status=S.RUNNING, start_at=now, is_sleeping=True, sleeping_unique_id=sleeping_id,
                                   started_at=now, lease_expires_at=now + timeout, **common)
        return ExecutionRecord(status=S.READY, start_at=now + delay, ready_at=now + delay, **common)

    def _expect_same_error(self, operation: str, expected: BaseException | None, actual: BaseException | None) -> None:
        if expected is None and actual is None:
            return
        assert expected is not None and actual is not None and isinstance(actual, type(expected)), (
            f"{operation}: the contract says {expected!r}, the storage {'returned normally' if actual is None else 'raised ' + repr(actual)}"
        )

    def _on_one_id(
        self, data: st.DataObject, operation: str, model_operation: Callable[[list[str], float], list[StatusChange]]
    ) -> None:
        """Runs ``operation`` on one drawn id (known or not) on the storage and the model, and compares."""
        ids = [data.draw(st.sampled_from([*self.known_ids, "te_unknown"]))]
        self._compare_changes(operation, model_operation(ids, self.now), self.call(operation, ids, self.now))

    def _compare_changes(self, operation: str, expected: list[StatusChange], actual: list[StatusChange]) -> None:
        assert summarize(actual) == summarize(expected), (
            f"{operation} reported changes {summarize(actual)}, the contract says {summarize(expected)}"
        )

    def _compare_records(self, operation: str, expected: Sequence[ExecutionRecord | None],
                         actual: Sequence[ExecutionRecord | None]) -> None:
        assert len(actual) == len(expected), f"{operation} returned {len(actual)} records, expected {len(expected)}"
        for want, got in zip(expected, actual):
            assert want == got, f"{operation}: {difference(want, got)}"

    # -------------------------------------------------------------------------------- rules

    @rule(dt=_TIMES)
    def advance_time(self, dt: float) -> None:
        self.now += dt

    @initialize(data=st.data(), count=st.integers(2, 4))
    def start_with_some(self, data: st.DataObject, count: int) -> None:
        self.insert(data, count)

    @rule(data=st.data(), count=st.integers(1, 3))
    def insert(self, data: st.DataObject, count: int) -> None:
        records = []
        for _ in range(count):
            kind = data.draw(st.sampled_from(["ready"] * 16 + ["sleeping"] * 5 + ["keyed"] * 4 + ["existing_id"]))
            if kind == "existing_id" and self.model.records:
                existing = data.draw(st.sampled_from(sorted(self.model.records)))
                records.append(self._record(execution_id=existing))
            elif kind == "sleeping":
                records.append(self._record(sleeping_id=data.draw(_UNIQUE_IDS), task_id="w"))
            else:
                key = data.draw(st.sampled_from(["k1", "k2"])) if kind == "keyed" else None
                records.append(self._record(delay=data.draw(st.sampled_from([0.0, 0.5, 2.0])), idempotency_key=key,
                                            task_id=data.draw(st.sampled_from(["a", "b"]))))
        expected_error = actual_error = None
        expected = actual = None
        try:
            expected = self.model.insert(records)
        except (DuplicateSleepingTaskUniqueIdError, StorageError) as exc:
            expected_error = exc
        try:
            actual = self.call("insert_executions", records)
        except (DuplicateSleepingTaskUniqueIdError, StorageError) as exc:
            actual_error = exc
        self._expect_same_error("insert_executions", expected_error, actual_error)
        if expected is not None:
            assert actual is not None  # the storage raised no error either
            self._compare_records("insert_executions", expected, actual)

    @precondition(lambda self: self.model.records)
    @rule(limit=st.sampled_from([1, 2, 5, 1000]), lease_duration=st.sampled_from([0.0, 2.5]),
          executor=st.sampled_from(["de_1", "de_2"]))
    def claim(self, limit: int, lease_duration: float, executor: str) -> None:
        due = self.model.due(self.now)
        # never split records of equal ready_at: which of them a backend claims is its own
        # choice, and what the machine draws afterwards must not depend on it
        while 0 < limit < len(due) and due[limit - 1].ready_at == due[limit].ready_at:
            limit += 1
        claimed = self.call("claim_executions", executor, self.now, limit, lease_duration)
        ids = [r.execution_id for r in claimed]
        wanted = min(limit, len(due))
        assert len(ids) == wanted == len(set(ids)), f"claimed {ids} with limit {limit}; {wanted} were due"
        ready_at = {r.execution_id: r.ready_at for r in due if r.ready_at is not None}  # all of them
        assert set(ids) <= set(ready_at), f"claimed {sorted(set(ids) - set(ready_at))}, which were not due"
        times = [ready_at[i] for i in ids]
        assert times == sorted(times), f"claimed {ids} not earliest ready_at first: {times}"
        assert times == [r.ready_at for r in due[:wanted]], f"claimed {ids}, not the earliest due ({due[:wanted]})"
        expected = self.model.claim(ids, executor, self.now, lease_duration)
        self._compare_records("claim_executions", expected, claimed)
        # in id order: a backend may order records of equal ready_at any way, and what is drawn
        # for each lease must not depend on that (Hypothesis replays each example exactly)
        self.leases += sorted((r.lease for r in claimed), key=lambda lease: lease.execution_id)

    # the engine claims and commits far more often than anything else happens: so does the machine
    @rule(data=st.data(), count=st.integers(1, 3))
    def insert_more(self, data: st.DataObject, count: int) -> None:
        self.insert(data, count)

    @precondition(lambda self: self.model.due(self.now))
    @rule(limit=st.sampled_from([2, 1000]))
    def claim_more(self, limit: int) -> None:
        self.claim(limit, 0.0, "de_3")

    @precondition(lambda self: self._claimed())
    @rule(data=st.data())
    def commit_more(self, data: st.DataObject) -> None:
        self.commit(data)

    @precondition(lambda self: self._claimed())
    @rule(data=st.data())
    def commit_even_more(self, data: st.DataObject) -> None:
        self.commit(data)

    @precondition(lambda self: self.model.due(self.now))
    @rule(data=st.data())
    def engine_round(self, data: st.DataObject) -> None:
        """What an executor does in one poll: claim what is due, then commit each run's outcome."""
        before = set(self.leases)
        self.claim(1000, 2.5, "de_engine")
        for lease in [lease for lease in self.leases if lease not in before]:
            if self.model.holds(lease):
                self._send_commits([self._commit_for(data, self.model.records[lease.execution_id])])

    def _claimed(self) -> list[ExecutionRecord]:
        return [r for r in self.model.records.values() if r.lease_expires_at is not None and not r.is_sleeping]

    def _commit_for(self, data: st.DataObject, record: ExecutionRecord) -> RunCommit:
        """A commit the engine could send for the claimed ``record``."""
        now = self.now
        done = dict(finished_at=now, ready_at=None)
        if record.status is S.RUNNING:
            choice = data.draw(st.sampled_from(["complete", "fail", "retry", "children", "children"]))
        elif record.status is S.WAITING_FOR_CHILDREN:
            choice = data.draw(st.sampled_from(["complete", "finalize_failed", "finalize", "children"]))
        else:
            choice = data.draw(st.sampled_from(["complete", "finalize_failed"]))
        if choice == "complete":
            return RunCommit(record.copy(status=S.COMPLETED, output=data.draw(_OUTPUTS), error=None, **done))
        if choice in ("fail", "finalize_failed"):
            status = S.FINALIZE_FAILED if choice == "finalize_failed" else data.draw(
                st.sampled_from([S.FAILED, S.TIMED_OUT, S.CANCELLED]))
            return RunCommit(record.copy(status=status, error=data.draw(_ERRORS), **done))
        if choice == "retry":
            delay = data.draw(st.sampled_from([0.0, 1.0, 4.0]))
            return RunCommit(record.copy(status=S.READY, error=data.draw(_ERRORS), executor_id=None,
                                         retry_attempts=record.retry_attempts + 1, start_at=now + delay,
                                         ready_at=now + delay))
        if choice == "finalize":
            finalize = self._record(parent=record, is_finalize=True, task_id="f")
            return RunCommit(record.copy(status=S.WAITING_FOR_FINALIZE, ready_at=None, active_children_count=1,
                                         finalize=ExecutionRef(finalize.task_id, finalize.execution_id),
                                         waiting_for_finalize_started_at=now, error=None), (finalize,))
        kids = []
        for index in range(len(record.children), len(record.children) + data.draw(st.integers(1, 3))):
            if data.draw(st.booleans()):
                kids.append(self._record(parent=record, index=index, sleeping_id=data.draw(_UNIQUE_IDS), task_id="w"))
            else:
                kids.append(self._record(parent=record, index=index, delay=data.draw(st.sampled_from([0.0, 1.0]))))
        refs = tuple(ExecutionRef(k.task_id, k.execution_id) for k in kids)
        return RunCommit(record.copy(
            status=S.WAITING_FOR_CHILDREN, ready_at=None, active_children_count=len(kids), error=None,
            children=record.children + refs, run_output=record.run_output or data.draw(_OUTPUTS),
            waiting_for_children_started_at=record.waiting_for_children_started_at or now,
        ), tuple(kids))

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        commits = []
        for _ in range(data.draw(st.integers(1, 2))):
            claimed = self._claimed()
            stale = [lease for lease in self.leases if not self.model.holds(lease)
                     and lease.execution_id in self.model.records]
            if claimed and (not stale or data.draw(st.integers(0, 3)) > 0):
                record = data.draw(st.sampled_from(claimed))
            elif stale:
                lease = data.draw(st.sampled_from(stale))
                record = self.model.records[lease.execution_id].copy(lease_token=lease.token)
                if record.status.is_finished:
                    record.status = S.RUNNING
            else:
                return
            commits.append(self._commit_for(data, record))
        self._send_commits(commits)

    def _send_commits(self, commits: list[RunCommit]) -> None:
        expected_error = actual_error = None
        expected: list[StatusChange] = []
        actual: list[StatusChange] = []
        try:
            expected = self.model.commit(commits, self.now)
        except DuplicateSleepingTaskUniqueIdError as exc:
            expected_error = exc
        try:
            actual = self.call("commit_runs", commits, self.now)
        except DuplicateSleepingTaskUniqueIdError as exc:
            actual_error = exc
        self._expect_same_error("commit_runs", expected_error, actual_error)
        self._compare_changes("commit_runs", expected, actual)

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        if not self.leases:
            return
        leases = data.draw(st.lists(st.sampled_from(self.leases), max_size=3))
        expected = self.model.release(leases, self.now)
        self._compare_changes("release_leases", expected, self.call("release_leases", leases, self.now))

    @rule(data=st.data())
    def find_revoked(self, data: st.DataObject) -> None:
        choices = [*self.leases, Lease("te_unknown", 1)]
        leases = data.draw(st.lists(st.sampled_from(choices), max_size=4))
        assert self.call("find_revoked_leases", leases) == self.model.find_revoked(leases), "find_revoked_leases"

    @rule(data=st.data(), lease_duration=st.sampled_from([0.5, 20.0]))
    def renew(self, data: st.DataObject, lease_duration: float) -> None:
        sleepers = [r.lease for r in self.model.records.values() if r.is_sleeping]
        leases = data.draw(st.lists(st.sampled_from([*self.leases, *sleepers, Lease("te_unknown", 1)]), max_size=4))
        heartbeat = ExecutorInfo("de_a", "host", 1, 0.0, self.now, len(leases))
        expected = self.model.renew(leases, self.now, lease_duration)
        assert self.call("renew_leases", heartbeat, leases, self.now, lease_duration) == expected, "renew_leases"

    @rule(max_lease_expirations=st.sampled_from([0, 1, 3]))
    def expire(self, max_lease_expirations: int) -> None:
        expected = self.model.expire(self.now, max_lease_expirations)
        actual = self.call("expire_leases", self.now, max_lease_expirations, 1000)
        self._compare_changes("expire_leases", expected, actual)

    @precondition(lambda self: self.model.records)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self._on_one_id(data, "cancel_executions", self.model.cancel)

    @precondition(lambda self: self.model.records)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        self._on_one_id(data, "retry_executions", self.model.retry)

    @precondition(lambda self: any(r.is_sleeping for r in self.model.records.values()))
    @rule(data=st.data())
    def wake(self, data: st.DataObject) -> None:
        sleepers = [i for i, r in self.model.records.items() if r.is_sleeping]
        ids = data.draw(st.lists(st.sampled_from([*sleepers, *self.known_ids[-2:], "te_unknown"]), min_size=1,
                                 max_size=2))
        wakeups = []
        for execution_id in ids:
            if data.draw(st.booleans()):
                wakeups.append(SleepingWakeup(execution_id, S.COMPLETED, output=data.draw(_OUTPUTS)))
            else:
                wakeups.append(SleepingWakeup(execution_id, S.FAILED, error=data.draw(_ERRORS)))
        expected = self.model.wake(wakeups, self.now)
        self._compare_changes("wake_sleeping_executions", expected,
                              self.call("wake_sleeping_executions", wakeups, self.now))

    @rule(ago=_TIMES, limit=st.sampled_from([1, 1000]))
    def delete(self, ago: float, limit: int) -> None:
        before = self.now - ago
        eligible = {r.execution_id for r in self.model.deletable_roots(before)}
        if limit < len(eligible):  # which trees go is the backend's choice (as with claims of equal
            limit = len(eligible)  # ready_at); the operation checks cover partial deletion
        deleted = self.call("delete_finished_executions", before, limit)
        ids = list(self.model.records)
        gone = {i for i, record in zip(ids, self.call("get_executions", ids)) if record is None}
        roots = {i for i in gone if self.model.records[i].parent is None}
        assert roots <= eligible, f"deleted {sorted(roots - eligible)}, which are not finished roots before {before}"
        assert len(roots) == min(limit, len(eligible)), f"deleted {len(roots)} trees of {len(eligible)}, limit {limit}"
        trees = {i for root in roots for i in self.model.subtree(root)}
        assert gone == trees, f"deleted {sorted(gone)}, not whole trees {sorted(trees)}"
        assert deleted == self.model.delete_trees(sorted(roots)), "delete_finished_executions count"

    @rule(unique_ids=st.lists(_UNIQUE_IDS, max_size=3))
    def get_by_unique_id(self, unique_ids: list[str]) -> None:
        self._compare_records("get_executions_by_sleeping_unique_id", self.model.by_unique_id(unique_ids),
                              self.call("get_executions_by_sleeping_unique_id", unique_ids))

    @rule(statuses=st.none() | st.lists(st.sampled_from(ALL_TASK_EXECUTION_STATUSES), min_size=1, max_size=3),
          task_id=st.sampled_from([None, "a", "w"]), executor_id=st.sampled_from([None, "de_1", "de_3"]),
          limit=st.sampled_from([1, 3, 1000]), after=st.none() | st.integers(0, 50))
    def list_executions(self, statuses: list[S] | None, task_id: str | None, executor_id: str | None,
                        limit: int, after: int | None) -> None:
        """``after``: page on from the cursor of that record (by position among all, newest first)."""
        every = self.model.listed(None, None)
        before = list_key(every[after]) if after is not None and after < len(every) else None
        matches = self.model.listed(statuses, task_id, executor_id, before)
        listed = self.call("list_executions", statuses=statuses, task_id=task_id, executor_id=executor_id,
                           limit=limit, before=before)
        keys = [list_key(r) for r in listed]
        assert keys == sorted(keys, reverse=True), "list_executions is not newest first (created_at, execution_id)"
        assert keys == [list_key(r) for r in matches[:limit]], (
            "list_executions did not list the newest" + (f" before {before}" if before else ""))
        for record in listed:
            assert statuses is None or record.status in statuses, f"list_executions listed a {record.status} one"
            assert task_id is None or record.task_id == task_id, f"list_executions listed one of {record.task_id}"
            assert executor_id in (None, record.executor_id), f"list_executions listed one of {record.executor_id}"
            assert record == self.model.records.get(record.execution_id), (
                f"list_executions: {difference(self.model.records.get(record.execution_id), record)}")

    @invariant()
    def every_record_agrees(self) -> None:
        ids = self.known_ids
        if ids:
            self._compare_records("get_executions", self.model.get(ids), self.call("get_executions", ids))


class StateMachineChecks:
    """The backend and the model, driven by the same random operations, always agree."""


    async def test_storage_agrees_with_the_model(self, storages: StorageOpener) -> None:
        storage = await storages.open()
        machine = type("StorageMachineRun", (StorageMachine,), {"storage": storage})
        options: dict[str, Any] = dict(
            max_examples=50, stateful_step_count=50, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        )
        options.update(getattr(self, "hypothesis_settings", {}) or {})
        with _shrinking_for_at_most(SHRINK_SECONDS):
            await trio.to_thread.run_sync(
                functools.partial(run_state_machine_as_test, machine, settings=settings(**options)))

    # generating, then shrinking a disagreement to a short sequence of operations, take longer
    # than any other check: the watchdog waits for them (an attribute of the function, which the
    # plugin reads; mypy knows no attributes of functions)
    test_storage_agrees_with_the_model.minimum_timeout = 300.0  # type: ignore[attr-defined]


SHRINK_SECONDS = 60.0
"""How long Hypothesis may shrink a disagreement (its default is 300 s)."""


@contextlib.contextmanager
def _shrinking_for_at_most(seconds: float) -> Iterator[None]:
    """Bound Hypothesis's shrinking time, where its (internal) limit is where we expect it."""
    from hypothesis.internal.conjecture import engine

    default = getattr(engine, "MAX_SHRINKING_SECONDS", None)
    if not isinstance(default, int):
        yield
        return
    engine.MAX_SHRINKING_SECONDS = min(default, int(seconds))
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = default
