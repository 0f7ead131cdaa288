"""What every operation must also be: a trio checkpoint, atomic under cancellation, safe under
concurrency; and, where the storage says so, durable and shared by several storage objects."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import STORAGE_METHODS, ChangeNotifications, DuplicateSleepingTaskUniqueIdError
from durable_core.storage import ExecutionRecord, Lease, SleepingWakeup, Storage

from .checks_operations import full_record
from .marks import requires
from .opening import StorageOpener
from .records import LEASE_DURATION, OUTPUT, child, claim, claim_one, executor, finish
from .records import get, get_stored, new, sleeping, spawn, summarize

Call = Callable[[], Awaitable[Any]]


# ---------------------------------------------------------------------------------------- checkpoints


async def _checkpoint_calls(storage: Storage) -> dict[tuple[str, str], Call]:
    """For every operation, a call that does some work and one that finds nothing to do."""
    await storage.insert_executions([
        new("te_ready", now=10.0), new("te_claimed", now=10.0), sleeping("te_s", "u", now=10.0),
        new("te_done", now=10.0),
    ])
    claimed = await claim(storage, 10.0, 2)
    lease = next(r for r in claimed if r.execution_id == "te_claimed").lease
    await storage.cancel_executions(["te_done"], 10.0)
    commit = finish(next(r for r in claimed if r.execution_id == "te_ready"), S.COMPLETED, 11.0)
    return {
        ("insert_executions", "work"): lambda: storage.insert_executions([new("te_new", now=11.0)]),
        ("insert_executions", "empty"): lambda: storage.insert_executions([]),
        ("get_executions", "work"): lambda: storage.get_executions(["te_ready"]),
        ("get_executions", "empty"): lambda: storage.get_executions([]),
        ("get_executions_by_sleeping_unique_id", "work"): lambda: storage.get_executions_by_sleeping_unique_id(["u"]),
        ("get_executions_by_sleeping_unique_id", "empty"): lambda: storage.get_executions_by_sleeping_unique_id([]),
        ("list_executions", "work"): lambda: storage.list_executions(),
        ("list_executions", "empty"): lambda: storage.list_executions(task_id="nobody"),
        ("claim_executions", "work"): lambda: storage.claim_executions("de_b", 12.0, 10, LEASE_DURATION),
        ("claim_executions", "empty"): lambda: storage.claim_executions("de_b", 0.0, 10, LEASE_DURATION),
        ("commit_runs", "work"): lambda: storage.commit_runs([commit], 11.0),
        ("commit_runs", "empty"): lambda: storage.commit_runs([], 11.0),
        ("release_leases", "work"): lambda: storage.release_leases([lease], 11.0),
        ("release_leases", "empty"): lambda: storage.release_leases([], 11.0),
        ("find_revoked_leases", "work"): lambda: storage.find_revoked_leases([lease, Lease("te_x", 1)]),
        ("find_revoked_leases", "empty"): lambda: storage.find_revoked_leases([]),
        ("renew_leases", "work"): lambda: storage.renew_leases(executor(now=11.0), [lease, Lease("te_x", 1)], 11.0,
                                                               LEASE_DURATION),
        ("renew_leases", "empty"): lambda: storage.renew_leases(executor(now=11.0), [], 11.0, LEASE_DURATION),
        ("list_executors", "work"): lambda: storage.list_executors(0.0),
        ("list_executors", "empty"): lambda: storage.list_executors(1e12),
        ("expire_leases", "work"): lambda: storage.expire_leases(1000.0, 10, 10),
        ("expire_leases", "empty"): lambda: storage.expire_leases(0.0, 10, 10),
        ("cancel_executions", "work"): lambda: storage.cancel_executions(["te_ready", "te_claimed"], 11.0),
        ("cancel_executions", "empty"): lambda: storage.cancel_executions([], 11.0),
        ("wake_sleeping_executions", "work"): lambda: storage.wake_sleeping_executions(
            [SleepingWakeup("te_s", S.COMPLETED, output=OUTPUT)], 11.0),
        ("wake_sleeping_executions", "empty"): lambda: storage.wake_sleeping_executions([], 11.0),
        ("retry_executions", "work"): lambda: storage.retry_executions(["te_done"], 11.0),
        ("retry_executions", "empty"): lambda: storage.retry_executions([], 11.0),
        ("delete_finished_executions", "work"): lambda: storage.delete_finished_executions(1e9, 10),
        ("delete_finished_executions", "empty"): lambda: storage.delete_finished_executions(0.0, 10),
    }


class CheckpointChecks:
    """Every operation is a trio checkpoint (``trio.testing.assert_checkpoints``): it can be
    cancelled and lets other tasks run, also when it has nothing to do."""

    @pytest.mark.parametrize("work", ["work", "empty"])
    @pytest.mark.parametrize("operation", STORAGE_METHODS)
    async def test_every_operation_is_a_checkpoint(self, storage: Storage, operation: str, work: str) -> None:
        calls = await _checkpoint_calls(storage)
        with trio.testing.assert_checkpoints():
            await calls[operation, work]()


# ---------------------------------------------------------------------------------------- cancellation


class _Scenario:
    """One operation on fresh records, and how much of it was applied: none, all, or partly."""

    def __init__(self, storage: Storage, prefix: str, now: float):
        self.storage, self.p, self.now = storage, prefix, now
        self.ids: list[str] = []

    def new(self, name: str, **fields: Any) -> ExecutionRecord:
        self.ids.append(f"{self.p}{name}")
        return new(f"{self.p}{name}", now=self.now, **fields)

    async def records(self, names: list[str]) -> list[ExecutionRecord | None]:
        return await self.storage.get_executions([f"{self.p}{n}" for n in names])

    async def stored(self, names: list[str]) -> list[ExecutionRecord]:
        """The named records, which no operation of the scenario deletes."""
        records = [r for r in await self.records(names) if r is not None]
        assert len(records) == len(names), f"records of {names} vanished"
        return records

    async def cleanup(self) -> None:
        await self.storage.cancel_executions(self.ids, self.now + 500.0)
        await self.storage.delete_finished_executions(self.now + 900.0, 1000)


async def _prepare(operation: str, sc: _Scenario) -> tuple[Call, Callable[[], Awaitable[int | None]], int]:
    """The call, a probe counting the records it changed so far, and how many it changes in all."""
    storage, now, p = sc.storage, sc.now, sc.p
    names = ["a", "b", "c", "d"]
    if operation == "insert_executions":
        records = [sc.new("a"), sc.new("b"), sleeping(f"{p}c", f"{p}u", now=now), sc.new("d", idempotency_key=p)]
        sc.ids.append(f"{p}c")

        async def inserted() -> int:
            return sum(r is not None for r in await sc.records(names))

        return lambda: storage.insert_executions(records), inserted, 4
    if operation in ("claim_executions", "release_leases", "renew_leases", "expire_leases", "commit_runs"):
        await storage.insert_executions([sc.new(n, timeout=1.0) for n in names])
        if operation == "claim_executions":
            async def claimed() -> int:
                return sum(r.lease_token == 1 for r in await sc.stored(names))

            return lambda: storage.claim_executions("de_x", now, 4, LEASE_DURATION), claimed, 4
        leases = await claim(storage, now, 4)
        assert len(leases) == 4

        async def renewed() -> int:
            return sum(r.lease_expires_at == now + 101.0 for r in await sc.stored(names))

        if operation == "renew_leases":
            heartbeat = executor(now=now + 1.0)
            return lambda: storage.renew_leases(heartbeat, [r.lease for r in leases], now + 1.0, 100.0), renewed, 4

        async def handed_back() -> int:
            return sum(r.status is S.READY for r in await sc.stored(names))

        if operation == "release_leases":
            return lambda: storage.release_leases([r.lease for r in leases], now), handed_back, 4
        if operation == "expire_leases":
            return lambda: storage.expire_leases(now + 100.0, 10, 10), handed_back, 4
        commits = [finish(r, S.COMPLETED if i % 2 else S.FAILED, now) for i, r in enumerate(leases)]

        async def committed() -> int:
            return sum(r.status.is_finished for r in await sc.stored(names))

        return lambda: storage.commit_runs(commits, now), committed, 4
    if operation == "cancel_executions":
        await storage.insert_executions([sc.new("root")])
        root = await claim_one(storage, now, f"{p}root")
        kids = [child(root, f"{p}{n}", now=now, index=i) for i, n in enumerate(names)]
        sc.ids += [k.execution_id for k in kids]
        await storage.commit_runs([spawn(root, kids, now)], now)

        async def cancelled() -> int:
            return sum(r.status is S.CANCELLED for r in await sc.stored(["root", *names]))

        return lambda: storage.cancel_executions([f"{p}root"], now), cancelled, 5
    if operation == "wake_sleeping_executions":
        asleep = [sleeping(f"{p}{n}", f"{p}{n}", now=now) for n in names]
        sc.ids += [r.execution_id for r in asleep]
        await storage.insert_executions(asleep)
        wakeups = [SleepingWakeup(r.execution_id, S.COMPLETED, output=OUTPUT) for r in asleep]

        async def woken() -> int:
            return sum(r.status is S.COMPLETED for r in await sc.stored(names))

        return lambda: storage.wake_sleeping_executions(wakeups, now), woken, 4
    if operation == "retry_executions":
        await storage.insert_executions([sc.new(n, ready_at=None) for n in names])
        await storage.cancel_executions(sc.ids, now)

        async def retried() -> int:
            return sum(r.status is S.READY for r in await sc.stored(names))

        return lambda: storage.retry_executions(sc.ids, now), retried, 4
    assert operation == "delete_finished_executions"
    roots = [sc.new(n, ready_at=None) for n in names]
    kids = [child(r, f"{r.execution_id}_kid", now=now, ready_at=None) for r in roots]
    await storage.insert_executions([*roots, *kids])
    await storage.cancel_executions([r.execution_id for r in roots], now)

    async def deleted() -> int:
        found = await storage.get_executions([r.execution_id for r in [*roots, *kids]])
        return sum(r is None for r in found)

    return lambda: storage.delete_finished_executions(now + 1.0, 10), deleted, 8


_STRATEGIES: tuple[str, ...] = ("cancelled before the call", *(f"cancelled after {k} yields" for k in range(6)),
                                "cancelled once every task is blocked")
_ATOMIC_OPERATIONS = ("insert_executions", "claim_executions", "commit_runs", "release_leases", "renew_leases",
                      "expire_leases", "cancel_executions", "wake_sleeping_executions", "retry_executions",
                      "delete_finished_executions")


async def _call_cancelled(call: Call, strategy: str) -> bool:
    """Run ``call`` under a cancel scope cancelled as ``strategy`` says; True if it was cut off."""
    with trio.CancelScope() as scope:
        if strategy == "cancelled before the call":
            scope.cancel()
            await call()
            return False
        async with trio.open_nursery() as nursery:
            async def canceller() -> None:
                if strategy.endswith("blocked"):
                    await trio.testing.wait_all_tasks_blocked()
                else:
                    for _ in range(int(strategy.split()[2])):
                        await trio.lowlevel.cancel_shielded_checkpoint()
                scope.cancel()

            nursery.start_soon(canceller)
            await call()
    return scope.cancelled_caught


class CancellationChecks:
    """An operation cancelled at any point of its call is applied wholly or not at all."""

    @pytest.mark.parametrize("operation", _ATOMIC_OPERATIONS)
    async def test_an_operation_cancelled_mid_call_is_applied_wholly_or_not_at_all(
        self, storage: Storage, operation: str
    ) -> None:
        for n, strategy in enumerate(_STRATEGIES):
            scenario = _Scenario(storage, f"te_{n}_", 1000.0 * (n + 1))
            call, applied, everything = await _prepare(operation, scenario)
            assert await applied() == 0
            await _call_cancelled(call, strategy)
            count = await applied()
            assert count in (0, everything), (
                f"{operation} {strategy} applied {count} of its {everything} changes: an operation must "
                "happen wholly or not at all, also when the calling task is cancelled"
            )
            await scenario.cleanup()
        assert await storage.list_executions() == []  # the storage still works


# ---------------------------------------------------------------------------------------- concurrency


async def _claimers(storages: list[Storage], ids: list[str], tasks_per_storage: int) -> dict[str, list[str]]:
    """Claim and complete until nothing is left; which claimer claimed which executions."""
    claims: dict[str, list[str]] = {}
    rng = random.Random(7)

    async def claimer(storage: Storage, executor_id: str, limit: int) -> None:
        mine = claims[executor_id] = []
        idle = 0
        while idle < 3:
            batch = await storage.claim_executions(executor_id, 1.0, limit, LEASE_DURATION)
            if not batch:
                idle += 1
                await trio.lowlevel.checkpoint()
                continue
            idle = 0
            mine.extend(r.execution_id for r in batch)
            changes = await storage.commit_runs([finish(r, S.COMPLETED, 2.0) for r in batch], 2.0)
            assert set(summarize(changes)) == {r.execution_id for r in batch}, "a fresh claim's commit was refused"

    async with trio.open_nursery() as nursery:
        for s, storage in enumerate(storages):
            for n in range(tasks_per_storage):
                nursery.start_soon(claimer, storage, f"de_{s}_{n}", rng.randint(1, 7))
    return claims


class ConcurrencyChecks:
    """Many concurrent callers: each execution is claimed once, a fenced write never wins late."""

    async def test_concurrent_claimers_claim_each_execution_once(self, storage: Storage) -> None:
        ids = [f"te_{i:03}" for i in range(300)]
        await storage.insert_executions([new(i, ready_at=n / 1000) for n, i in enumerate(ids)])
        claims = await _claimers([storage], ids, 30)
        claimed = [i for mine in claims.values() for i in mine]
        assert sorted(claimed) == ids, "some execution was claimed twice, or never"
        assert sum(1 for mine in claims.values() if mine) > 1, "one claimer took everything"
        finished = await storage.list_executions(statuses=[S.COMPLETED], limit=1000)
        assert len(finished) == len(ids)

    async def test_concurrent_commits_and_cancels_each_win_whole(self, storage: Storage) -> None:
        ids = [f"te_{i:03}" for i in range(120)]
        await storage.insert_executions([new(i) for i in ids])
        claimed = await claim(storage, 0.0, 1000)
        committed: set[str] = set()
        cancelled: set[str] = set()
        rng = random.Random(3)
        order = list(claimed)
        rng.shuffle(order)

        async def committer(records: list[ExecutionRecord]) -> None:
            for record in records:
                changes = await storage.commit_runs([finish(record, S.COMPLETED, 1.0)], 1.0)
                committed.update(summarize(changes))

        async def canceller(execution_ids: list[str]) -> None:
            for execution_id in execution_ids:
                cancelled.update(summarize(await storage.cancel_executions([execution_id], 1.0)))

        async with trio.open_nursery() as nursery:
            for k in range(4):
                nursery.start_soon(committer, order[k::4])
                nursery.start_soon(canceller, [r.execution_id for r in order[k::4]][::-1])
        assert committed.isdisjoint(cancelled), "an execution was both committed and cancelled"
        assert committed | cancelled == set(ids)
        for record in await storage.get_executions(ids):
            assert record is not None
            assert record.status is (S.COMPLETED if record.execution_id in committed else S.CANCELLED)


class MultiInstanceChecks:
    """Several storage objects opened on the same data (``multi_process``) act as one storage."""

    @requires("multi_process", why="several storage objects on the same data")
    async def test_storage_objects_on_the_same_data_claim_each_execution_once(self, storages: StorageOpener) -> None:
        first = await storages.open()
        second = await storages.open()
        ids = [f"te_{i:03}" for i in range(200)]
        await first.insert_executions([new(i) for i in ids[:100]])
        await second.insert_executions([new(i) for i in ids[100:]])
        claims = await _claimers([first, second], ids, 8)
        claimed = [i for mine in claims.values() for i in mine]
        assert sorted(claimed) == ids, "some execution was claimed twice, or never"

    @requires("multi_process", why="several storage objects on the same data")
    async def test_a_write_through_one_storage_object_fences_the_other(self, storages: StorageOpener) -> None:
        first = await storages.open()
        second = await storages.open()
        await first.insert_executions([new("te_1"), sleeping("te_s", "u")])
        claimed = await claim_one(second, 0.0, "te_1")
        assert await get(first, "te_1") == claimed
        await first.cancel_executions(["te_1"], 1.0)
        assert await second.commit_runs([finish(claimed, S.COMPLETED, 2.0)], 2.0) == []
        assert await second.find_revoked_leases([claimed.lease]) == ["te_1"]
        with pytest.raises(DuplicateSleepingTaskUniqueIdError):
            await second.insert_executions([sleeping("te_s2", "u")])


class ChangeNotificationChecks:
    """The change feed (``change_notifications``) tells one storage object of another's writes."""

    @requires("change_notifications", "multi_process", why="a change feed across storage objects")
    async def test_a_write_through_another_storage_object_moves_the_change_counter(
        self, storages: StorageOpener
    ) -> None:
        first = await storages.open()
        second = await storages.open()
        assert isinstance(first, ChangeNotifications), "the storage has change_notifications yet no wait_for_changes"
        seen = await first.wait_for_changes(None)
        assert isinstance(seen, int)
        assert await first.wait_for_changes(None) == seen, "nothing changed, yet the counter moved"
        await second.insert_executions([new("te_1")])
        moved = await first.wait_for_changes(seen)
        assert moved != seen
        claimed = await claim_one(second, 0.0, "te_1")
        await second.commit_runs([finish(claimed, S.COMPLETED, 1.0)], 1.0)
        moved_again = await first.wait_for_changes(moved)
        assert moved_again != moved

        with trio.move_on_after(1) as scope:  # waiting is cancellable, and harms nothing
            await first.wait_for_changes(moved_again)
        assert scope.cancelled_caught
        await first.insert_executions([new("te_2")])
        assert await get(second, "te_2") is not None


# ---------------------------------------------------------------------------------------- durability


async def _varied_state(storage: Storage) -> dict[str, Any]:
    """Records in every situation the engine leaves them in; returns what to check after reopening."""
    await storage.insert_executions([
        full_record(), new("te_ready", now=1.0), new("te_later", now=1.0, ready_at=500.0, start_at=500.0),
        new("te_claimed", now=0.75), new("te_key", now=0.8, idempotency_key="key"), new("te_p", now=0.5),
    ])
    parent = await claim_one(storage, 0.5, "te_p")
    kids = [child(parent, "te_c", now=1.0, ready_at=2.0),
            child(parent, "te_sleep", now=1.0, index=1, make=sleeping, unique_id="wake-me")]
    await storage.commit_runs([spawn(parent, kids, 1.0)], 1.0)
    claimed = {r.execution_id: r for r in await claim(storage, 1.0, 3)}
    assert set(claimed) == {"te_claimed", "te_key", "te_ready"}
    await storage.commit_runs([finish(claimed["te_key"], S.COMPLETED, 2.0)], 2.0)
    return {"lease": claimed["te_claimed"].lease}


class DurabilityChecks:
    """A ``persistent`` storage keeps everything across closing and reopening."""

    @requires("persistent", why="closing and reopening the storage keeps every record")
    async def test_closing_and_reopening_keeps_every_record(self, storages: StorageOpener) -> None:
        storage = await storages.open()
        kept = await _varied_state(storage)
        before = await storage.list_executions(limit=1000)
        assert len(before) == 8
        storage = await storages.reopen(storage)
        assert await storage.list_executions(limit=1000) == before
        assert await storage.get_executions([r.execution_id for r in before]) == before

        # indexes, leases and schedules work as before
        (twin,) = await storage.insert_executions([new("te_key2", idempotency_key="key")])
        assert twin.execution_id == "te_key"
        with pytest.raises(DuplicateSleepingTaskUniqueIdError):
            await storage.insert_executions([sleeping("te_dup", "wake-me")])
        assert (await storage.get_executions_by_sleeping_unique_id(["wake-me"]))[0] == await get(storage, "te_sleep")
        assert await storage.find_revoked_leases([kept["lease"], Lease("te_claimed", 99)]) == ["te_claimed"]
        claimed = await get(storage, "te_claimed")
        assert claimed is not None
        assert summarize(await storage.commit_runs([finish(claimed, S.COMPLETED, 3.0)], 3.0))
        assert [r.execution_id for r in await claim(storage, 3.0)] == ["te_c"]
        assert [r.execution_id for r in await claim(storage, 500.0)] == ["te_full", "te_later"]
        expired = summarize(await storage.expire_leases(10_000.0, 10, 100))
        assert set(expired) >= {"te_ready", "te_sleep", "te_later", "te_c", "te_full"}

    @requires("persistent", why="closing and reopening the storage keeps every record")
    async def test_every_write_is_kept_across_several_reopenings(self, storages: StorageOpener) -> None:
        storage = await storages.open()
        await storage.insert_executions([new("te_1")])
        storage = await storages.reopen(storage)
        claimed = await claim_one(storage, 0.0, "te_1")
        storage = await storages.reopen(storage)
        assert await get(storage, "te_1") == claimed
        await storage.commit_runs([finish(claimed, S.COMPLETED, 1.0)], 1.0)
        storage = await storages.reopen(storage)
        assert (await get_stored(storage, "te_1")).status is S.COMPLETED
        assert await storage.delete_finished_executions(2.0, 10) == 1
        storage = await storages.reopen(storage)
        assert await storage.list_executions() == []


ROBUSTNESS_CHECKS: tuple[type, ...] = (
    CheckpointChecks, CancellationChecks, ConcurrencyChecks, MultiInstanceChecks, ChangeNotificationChecks,
    DurabilityChecks,
)
