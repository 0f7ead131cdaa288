"""The pytest plugin users get with durable-core (``durable`` fixture), run as a user runs it: pytest
in a fresh folder, on the storage chosen on its command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

USER_TESTS = '''
import pytest, trio
from durable_core import DurableExecutor, RetryOptions, TaskExecutionStatus

app = DurableExecutor()  # the application's executor, never started here

@app.task(id="flaky", timeout=10, retry=RetryOptions(max_attempts=3, base_delay=600))
async def flaky(ctx, input):
    if ctx.attempt < 3:
        raise ConnectionError("down")
    return input * 2

app.sleeping_task(id="approval", timeout=3600)


async def test_run_task_waits_through_half_an_hour_of_backoff(durable):
    async with durable.executor(tasks_from=app) as executor:
        started = trio.current_time()
        finished = await durable.run_task(executor, "flaky", 21)
    assert finished.output == 42 and finished.retry_attempts == 3
    assert trio.current_time() - started >= 1800


async def test_each_test_gets_fresh_data_on_the_chosen_storage(durable):
    expected = "{storage}"
    assert durable.storage == expected if isinstance(durable.storage, str) else expected == "memory"
    async with durable.executor(tasks_from=app) as executor:
        assert await executor.storage.list_executions() == []  # the test above stored one


async def test_run_until_idle_stops_at_a_sleeping_task(durable):
    async with durable.executor(tasks_from=app) as executor:
        sleeping = await executor.enqueue_task("approval", "order-1")
        await durable.run_until_idle(executor)
        assert (await sleeping.get_execution()).status is TaskExecutionStatus.RUNNING
        await executor.wakeup_sleeping_task_execution("approval", "order-1", output="ok")
        await durable.run_until_idle(executor)
        assert (await sleeping.get_execution()).output == "ok"


def test_a_client_waits_in_virtual_time(durable):
    with durable.client(durable.executor(tasks_from=app)) as client:
        execution_id = client.enqueue("flaky", 5)
        finished = client.wait(execution_id)  # twenty virtual minutes of backoff
    assert finished.output == 10 and finished.retry_attempts == 3


@pytest.mark.durable
async def test_a_marked_test_runs_on_the_virtual_clock():
    await trio.sleep(24 * 3600)


async def test_other_async_tests_are_left_to_other_plugins():
    raise AssertionError("not run by the durable plugin")
'''


def run_user_tests(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("storage", ["memory", "sqlite", "postgres"])
def test_the_durable_fixture_on_each_storage(tmp_path, storage):
    if storage == "postgres":
        from durable_storage_postgres.testing import test_dsn

        test_dsn()  # skips (or fails in CI) without a server
    (tmp_path / "test_app.py").write_text(USER_TESTS.replace("{storage}", storage))
    result = run_user_tests(tmp_path, "--durable-storage", storage)
    assert "5 passed" in result.stdout, result.stdout + result.stderr
    # the one async test without the fixture or marker was not run by us: pytest refuses it
    assert "1 failed, 5 passed" in result.stdout
    assert "async def functions are not natively supported" in result.stdout


def test_a_malformed_storage_option_is_a_usage_error(tmp_path):
    (tmp_path / "test_app.py").write_text(USER_TESTS)
    result = run_user_tests(tmp_path, "--durable-storage-option", "no-equals-sign")
    assert result.returncode == 4
    assert "--durable-storage-option: --option expects key=value" in result.stderr


def test_an_unknown_storage_names_the_install_command(tmp_path):
    (tmp_path / "test_app.py").write_text(USER_TESTS)
    result = run_user_tests(tmp_path, "--durable-storage", "nosuch", "-k", "run_task")
    assert result.returncode == 1
    assert "storage 'nosuch' is not installed; run: durable install nosuch" in result.stdout


CTRL_C_IN_A_TASK = '''
import pytest
import trio


@pytest.mark.durable
async def test_interrupted_inside_a_nursery():
    async def pressed():
        raise KeyboardInterrupt  # as trio raises Ctrl-C in whatever task runs when it arrives

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pressed)


@pytest.mark.durable
async def test_never_reached():
    pass
'''


def test_ctrl_c_inside_a_task_stops_the_session(tmp_path):
    """Trio raises Ctrl-C in the task that runs when it arrives; inside a nursery it comes out in an
    exception group, which must stop the session as a bare one does (pytest's exit code 2), not
    count as one failed test and run the rest (`durable conformance` relies on this too)."""
    (tmp_path / "test_app.py").write_text(CTRL_C_IN_A_TASK)
    result = run_user_tests(tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "KeyboardInterrupt" in result.stdout and "1 passed" not in result.stdout
