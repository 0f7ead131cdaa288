"""The suite fails on deliberately broken storages, on the checks that catch each bug.

Each broken storage (``broken_storages.py``) runs the whole suite in a pytester session. The
state machine runs derandomized and without shrinking, so that each outcome is the same every
time and the self-tests stay fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from durable_core.storage import STORAGE_METHODS

pytest_plugins = ["pytester"]

HERE = Path(__file__).parent
SETTINGS = ('{"derandomize": True, "max_examples": 30, '
            '"phases": [Phase.explicit, Phase.reuse, Phase.generate]}')


def write_suite(pytester: pytest.Pytester, storage: str, extra: str = "") -> None:
    """A test module running the suite on ``broken_storages.<storage>``, its class body + ``extra``."""
    pytester.syspathinsert(HERE)
    pytester.makepyfile(test_broken=f'''
import pytest
from hypothesis import Phase
from durable_conformance import StorageConformance
from broken_storages import {storage}

pytest_plugins = ["durable_conformance.plugin"]


class TestBroken(StorageConformance):
    hypothesis_settings = {SETTINGS}
{extra}
    @pytest.fixture
    def storage_factory(self):
        return {storage}
''')


def run_suite(pytester: pytest.Pytester, storage: str, *args: str, extra: str = "") -> dict[str, set[str]]:
    """Run the suite on ``broken_storages.<storage>``; the names of the checks by outcome."""
    write_suite(pytester, storage, extra)
    reprec = pytester.inline_run("-p", "no:cacheprovider", *args)
    passed, skipped, failed = reprec.listoutcomes()
    names = {"passed": passed, "skipped": skipped, "failed": failed}
    return {outcome: {r.nodeid.rpartition("::")[2] for r in reports} for outcome, reports in names.items()}


def checkpoint(operation: str, work: str) -> str:
    return f"test_every_operation_is_a_checkpoint[{operation}-{work}]"


COMMITTED_DEFERRED_OPTIONS = "test_a_commit_stores_deferred_options_as_sent_cleared_or_kept"

CAUGHT_BY = [
    pytest.param("DoubleClaimStorage", {
        "test_concurrent_claimers_claim_each_execution_once",
        "test_scenario_two_executors_run_each_execution_exactly_once"}, id="a double claim"),
    pytest.param("LostWriteStorage", {
        "test_commit_stores_every_field_but_the_lease", "test_storage_agrees_with_the_model",
        "test_scenario_parent_children_and_finalize", "test_scenario_a_task_retries_with_backoff_in_virtual_time",
        }, id="a lost write"),
    pytest.param("IgnoredFencingStorage", {
        "test_a_commit_whose_token_is_not_the_stored_one_changes_nothing",
        "test_a_lease_ended_by_anything_can_never_commit_again",
        "test_scenario_a_late_result_after_a_lost_lease_is_discarded",
        "test_storage_agrees_with_the_model"}, id="an ignored fencing token"),
    pytest.param("RevivingHeartbeatStorage", {
        "test_a_heartbeat_extends_the_leases_that_hold_and_names_the_others",
        "test_a_renewed_lease_expires_only_once_its_new_end_has_passed",
        "test_storage_agrees_with_the_model"}, id="a heartbeat that revives lost leases"),
    pytest.param("NonAtomicBatchStorage", {
        "test_duplicate_sleeping_unique_id_raises_and_inserts_nothing",
        "test_existing_execution_id_raises_and_inserts_nothing",
        "test_an_operation_cancelled_mid_call_is_applied_wholly_or_not_at_all[insert_executions]",
        "test_storage_agrees_with_the_model"}, id="a non-atomic batch"),
    pytest.param("DroppedDeferredOptionsStorage", {"test_inserted_record_round_trips_every_field",
                  "test_deferred_options_round_trip_through_get_list_and_claim", "test_claims_follow_the_rules",
                  COMMITTED_DEFERRED_OPTIONS}, id="deferred options dropped"),
    pytest.param("StickyDeferredOptionsStorage", {COMMITTED_DEFERRED_OPTIONS, "test_commits_follow_the_rules"},
                 id="deferred options never committed"),
]
"""Broken storages, each with (some of) the checks that must fail on it."""


@pytest.mark.parametrize(("storage", "checks"), CAUGHT_BY)
def test_a_broken_storage_fails_the_checks_that_catch_its_bug(
    pytester: pytest.Pytester, storage: str, checks: set[str]
) -> None:
    only_these = " or ".join(sorted({check.partition("[")[0] for check in checks}))  # the suite takes minutes
    assert checks <= run_suite(pytester, storage, "-k", only_these)["failed"]


def test_a_missing_checkpoint_fails_exactly_the_checkpoint_checks(pytester: pytest.Pytester) -> None:
    outcomes = run_suite(pytester, "MissingCheckpointStorage")
    # the engine may stumble too: tasks scheduled in another order meet other races
    direct = {name for name in outcomes["failed"] if not name.startswith("test_scenario_")}
    assert direct == {checkpoint("get_executions", "work"), checkpoint("get_executions", "empty")}


# ---------------------------------------------------------------------------------------- declaring failures


def test_known_failures_become_strict_xfails(pytester: pytest.Pytester) -> None:
    """A declared known failure is reported xfailed; one that passes fails the run (strict)."""
    extra = '''    known_failures = {
        "test_every_operation_is_a_checkpoint[get_executions-work]": "reads skip the checkpoint (issue 12)",
        "test_every_operation_is_a_checkpoint[get_executions-empty]": "reads skip the checkpoint (issue 12)",
        "test_claim_takes_the_earliest_ready_first_up_to_the_limit": "declared by mistake: it passes",
    }
'''
    outcomes = run_suite(pytester, "MissingCheckpointStorage", "-k", "checkpoint or earliest_ready", extra=extra)
    assert outcomes["failed"] == {"test_claim_takes_the_earliest_ready_first_up_to_the_limit"}  # XPASS(strict)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "checkpoint or earliest_ready", "-rxX")
    result.stdout.fnmatch_lines(["*XPASS(strict)*known failure: declared by mistake: it passes*",
                                 "*XFAIL*get_executions-work*known failure: reads skip the checkpoint (issue 12)*"])
    result.assert_outcomes(failed=1, xfailed=2, passed=2 * len(STORAGE_METHODS) - 2)  # a work and an empty call each


def test_a_known_failure_naming_no_check_is_refused(pytester: pytest.Pytester) -> None:
    extra = '    known_failures = {"test_that_does_not_exist": "typo"}\n'
    write_suite(pytester, "MissingCheckpointStorage", extra=extra)
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*known_failures names no conformance check: test_that_does_not_exist*"])


def test_required_checks_cannot_be_skipped_or_overridden(pytester: pytest.Pytester) -> None:
    extra = '''    @pytest.mark.skip(reason="too strict for us")
    async def test_claim_takes_the_earliest_ready_first_up_to_the_limit(self, storage):
        pass

    def test_get_returns_records_in_the_order_asked_with_none_for_unknown_ids(self):
        pytest.skip("we do not do that")
'''
    write_suite(pytester, "MissingCheckpointStorage", extra=extra)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "earliest_ready or records_in_the_order_asked")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([("*test_claim_takes_the_earliest_ready_first_up_to_the_limit is a required "
                                  "conformance check: it cannot be skipped*"),
                                 "*overrides the conformance check of the same name from InsertChecks*"])
    pytester.makepyfile(test_broken='''
import pytest
from durable_conformance import StorageConformance
from durable_storage_memory import MemoryStorage

pytest_plugins = ["durable_conformance.plugin"]


@pytest.mark.skip(reason="not today")
class TestSkipped(StorageConformance):
    @pytest.fixture
    def storage_factory(self):
        return MemoryStorage
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "earliest_ready or durability or reopening")
    result.assert_outcomes(errors=1, skipped=3)  # skipping an optional check is allowed
    result.stdout.fnmatch_lines(["*is a required conformance check: it cannot be skipped*"])


def test_a_storage_factory_is_required_and_checked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_broken='''
import pytest
from durable_conformance import StorageConformance

pytest_plugins = ["durable_conformance.plugin"]


class TestNoFactory(StorageConformance):
    pass


class TestNotAStorage(StorageConformance):
    @pytest.fixture
    def storage_factory(self):
        return dict
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "earliest_ready")
    result.assert_outcomes(errors=1, failed=1)
    result.stdout.fnmatch_lines(["*must define a `storage_factory` fixture*",
                                 "*lacks the storage operations insert_executions*"])


def test_without_the_plugin_the_suite_says_how_to_enable_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_broken='''
import pytest
from durable_conformance import StorageConformance
from durable_storage_memory import MemoryStorage


class TestForgotThePlugin(StorageConformance):
    @pytest.fixture
    def storage_factory(self):
        return MemoryStorage
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "earliest_ready")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the conformance suite needs its pytest plugin: add pytest_plugins = *"])


def test_a_backend_authors_own_tests_run_in_the_class_and_may_skip(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine='''
import pytest
import trio
from durable_conformance import StorageConformance
from durable_conformance.records import new
from durable_storage_memory import MemoryStorage

pytest_plugins = ["durable_conformance.plugin"]


class TestMine(StorageConformance):
    @pytest.fixture
    def storage_factory(self):
        return MemoryStorage

    async def test_my_own_check(self, storage):
        await storage.insert_executions([new("te_1")])
        await trio.sleep(3600)  # virtual time
        assert len(await storage.list_executions()) == 1

    async def test_my_own_skip(self, storage):
        pytest.skip("mine to skip")
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "my_own")
    result.assert_outcomes(passed=1, skipped=1)
