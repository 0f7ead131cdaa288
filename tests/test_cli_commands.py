"""The real ``durable`` command, in subprocesses: user mistakes, a worker with enqueue and every
``executions`` command, the demo resuming after Ctrl-C and kill, and plugins (broken ones,
commands they add)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pty
import re
import signal
import sqlite3
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import pytest

APP = '''
import trio
from durable_core import DurableExecutor, ParentTaskResult, child_task

executor = DurableExecutor.from_config()

@executor.task(id="hello", timeout=5)
async def hello(ctx, input):
    return {"hello": input}

@executor.task(id="boom", timeout=5)
async def boom(ctx, input):
    raise RuntimeError("boom")

@executor.task(id="slow", timeout=60)
async def slow(ctx, input):
    await trio.sleep(60)

@executor.parent_task(id="family", timeout=5)
async def family(ctx, input):
    return ParentTaskResult(output=input, children=[child_task(hello, i) for i in range(input)])

wait = executor.sleeping_task(id="wait", timeout=60)
'''
SQLITE_CONFIG = '[storage]\nname = "sqlite"\n[storage.options]\npath = "test.db"\n[executor]\nshutdown_timeout = 0.5\npoll_interval = 0.1\n'


def durable(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``durable ARGS`` as a user would (``python -m durable_core.cli``)."""
    return subprocess.run([sys.executable, "-m", "durable_core.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env=environment(env), check=False)


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "DURABLE_CONFIG"}
    return env | (extra or {})


def start(*args: str, cwd: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``durable ARGS`` in the background, its stderr going to ``log``."""
    with log.open("wb") as stderr:
        return subprocess.Popen([sys.executable, "-m", "durable_core.cli", *args], cwd=cwd,
                                stdout=subprocess.PIPE, stderr=stderr, env=environment(env))


def wait_for(log: Path, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"{text!r} never appeared in:\n{log.read_text()}"
        time.sleep(0.05)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "durable.toml").write_text(SQLITE_CONFIG)
    return tmp_path


# ----------------------------------------------------------------------------- user mistakes


@pytest.mark.parametrize(("args", "config", "message"), [
    (["enqueue", "app:hello", "--input", "{bad"], None,
     "error: Invalid value for '--input': not valid JSON (Expecting property name enclosed in double quotes"),
    (["enqueue", "nope:hello"], None, "error: module 'nope' not found in the working directory or on sys.path"),
    (["enqueue", "app:helo"], None, "error: module 'app' has no task 'helo'; did you mean 'hello'? its tasks: boom, family, hello, slow, wait"),
    (["enqueue", "app"], None, "error: 'app' is not MODULE:TASK; write e.g. app:task"),
    (["worker", "app:exec"], None, "error: module 'app' has no executor 'exec'; did you mean 'executor'?"),
    (["worker", "app:hello"], None, "error: app:hello is a Task, not an executor; its executors: executor"),
    (["executions", "show", "te_nope"], None, ("error: execution 'te_nope' not found in storage 'sqlite' "
                                               "(path='test.db'; from durable.toml); list them with: durable executions list")),
    (["executions", "cancel", "te_nope"], None, "error: execution 'te_nope' not found in storage 'sqlite'"),
    (["executions", "wakeup", "app:wait", "nope", "--output", "1"], None,
     "error: Sleeping task execution not found [sleepingTaskUniqueId=nope]"),
    (["executions", "gc", "--older-than", "7x"], None, "error: Invalid value for '--older-than': '7x' is not a duration; write e.g. 7d"),
    (["install", "sqlit"], None, "error: unknown plugin 'sqlit'; did you mean 'sqlite'?"),
    (["install", "nope"], None, ("error: unknown plugin 'nope'; short names: cbor, conformance, memory, otel, postgres, prometheus, "
                                 "sqlite, web (installed ones: durable plugins --all); for another distribution give its full "
                                 "name (e.g. durable-storage-nope) or a path")),
    (["install", "postgress"], None, "error: unknown plugin 'postgress'; did you mean 'postgres'? short names: "),
    (["enqueue"], None, "error: Missing argument 'MODULE:TASK'. (see: durable enqueue --help)"),
    (["executions", "list"], '[storage]\nname = "postgresql"\n', "error: storage 'postgresql' is not installed; run: durable install postgresql"),
    (["executions", "list"], "[storage\n", "error: durable.toml: not valid TOML: "),
    (["enqueue", "app:hello"], "[executor]\npoll_interval = 'x'\n", "error: durable.toml: executor.poll_interval: expected a number > 0"),
    (["--config", "missing.toml", "executions", "list"], None, "error: config file "),
    (["config", "set", "storage.name", "5"], None, "error: durable.toml: storage.name: expected the name of an installed storage plugin"),
    # bad input (a command line holds at most 128 KiB per argument: 60,000 levels, not 100,000)
    (["enqueue", "app:hello", "--input", "[" * 60_000 + "]" * 60_000], None,
     "error: Invalid value for '--input': JSON nested too deeply to read"),
    (["enqueue", "app:hello", "--input", "9" * 5000], None,
     "error: Invalid value for '--input': cannot read this JSON: Exceeds the limit (4300 digits) for integer string"),
    (["enqueue", "app:hello", "--priority", "-1"], None,
     "error: Invalid value for '--priority': -1 is not in the range 0<=x<=1000000."),
    (["enqueue", "app:hello", "--delay", "10x"], None,
     "error: Invalid value for '--delay': '10x' is not a duration; write e.g. 7d, 12h, 30m, 90s or 2w"),
    (["enqueue", "app:hello", "--delay", "4000d"], None,
     "error: Invalid value for '--delay': '4000d' is too long; at most 10 years (3652d)"),
    (["enqueue", "app:hello", "--at", "2026-12-24T09:00:00"], None,
     "error: Invalid value for '--at': '2026-12-24T09:00:00' has no UTC offset; add one, e.g. 2026-12-24T09:00:00+01:00, or Z"),
    (["enqueue", "app:hello", "--delay", "1m", "--at", "2026-12-24T09:00:00Z"], None, "error: give --delay or --at, not both"),
    (["enqueue", "app:hello", "--idempotency-key", ""], None,
     "error: Invalid value for '--idempotency-key': must be a string of 1..255 characters, got 0 characters"),
    (["enqueue", "app:hello", "--idempotency-key", "k" * 300], None,
     "error: Invalid value for '--idempotency-key': must be a string of 1..255 characters, got 300 characters"),
    (["executions", "list"], '[storage.options]\npath = 5\n',
     "error: durable.toml: storage.options.path: expected a file path (default 'durable.db'), got an integer 5"),
    (["executions", "gc", "--older-than", "1d"], '[storage.options]\npath = 5\n', "error: durable.toml: storage.options.path"),
    (["enqueue", "app:hello"], '[storage.options]\npath = 5\n', "error: durable.toml: storage.options.path: expected a file path"),
    (["worker", "app:executor"], '[storage.options]\npath = 5\n', "error: durable.toml: storage.options.path: expected"),
    (["demo"], '[storage]\nname = "memory"\n[storage.options]\npath = "x.db"\n',
     "error: durable.toml: storage.options.path is not an option of storage 'memory' (it takes none); remove it with: "
     "durable config unset storage.options.path"),
    (["config", "set", "storage.options.path", "5"], None, "error: durable.toml: storage.options.path: expected a file path"),
    (["executions", "list", "--limit", "99999999999999999999"], None,
     "error: Invalid value for '--limit': 99999999999999999999 is not in the range 1<=x<=1000000."),
    (["executions", "gc", "--older-than", "1000000w"], None,
     "error: Invalid value for '--older-than': '1000000w' is too long; at most 36500d (100 years)"),
    (["install", "--dry-run", "--", "--index-url=https://example.com"], None,
     "error: '--index-url=https://example.com' is not a plugin name: pip would read it as an option"),
    (["uninstall", "--", "-r", "requirements.txt"], None, "error: '-r' is not a plugin name"),
])
def test_a_user_mistake_is_one_line_on_stderr_and_exit_code_2(project: Path, args: list[str], config: str | None,
                                                               message: str) -> None:
    if config is not None:
        (project / "durable.toml").write_text(config)
    before = (project / "durable.toml").read_text()
    result = durable(*args, cwd=project)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert (project / "durable.toml").read_text() == before  # nothing changed, nothing stored
    assert stored_count(project / "test.db") == 0


def test_switching_the_storage_in_an_empty_folder_leaves_every_command_working(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    switched = durable("config", "set", "storage.name", "memory", cwd=tmp_path)
    assert switched.stdout == 'durable.toml: storage.name = "memory" (removed storage.options.path, options of \'sqlite\')\n'
    text = (tmp_path / "durable.toml").read_text()
    assert "path =" not in text and "# Keyword arguments of the storage plugin" in text  # comments kept
    for args in (["executions", "list"], ["enqueue", "app:hello"]):  # the file's storage, and from_config's
        assert durable(*args, cwd=tmp_path).returncode == 0, args

    (tmp_path / "durable.toml").write_text(text.replace("[storage.options]\n", '[storage.options]\npath = "x.db"\n'))
    for args in (["executions", "list"], ["enqueue", "app:hello"]):
        failed = durable(*args, cwd=tmp_path)
        assert (failed.returncode, failed.stderr) == (2, (
            "error: durable.toml: storage.options.path is not an option of storage 'memory' (it takes none); "
            "remove it with: durable config unset storage.options.path\n")), args
    assert durable("config", "unset", "storage.options.path", cwd=tmp_path).stdout == "durable.toml: removed storage.options.path\n"
    assert (tmp_path / "durable.toml").read_text() == text
    assert durable("executions", "list", cwd=tmp_path).returncode == 0


def test_config_set_uncomments_a_commented_out_key_in_place(tmp_path: Path) -> None:
    assert durable("config", "init", cwd=tmp_path).returncode == 0
    before = (tmp_path / "durable.toml").read_text()
    assert durable("config", "set", "executor.poll_interval", "0.1", cwd=tmp_path).returncode == 0
    after = (tmp_path / "durable.toml").read_text()
    assert after == before.replace("# poll_interval = 0.5\n", "poll_interval = 0.1\n")
    assert durable("config", "get", "executor.poll_interval", cwd=tmp_path).stdout == "0.1\n"


def stored_count(path: Path) -> int:
    """How many executions the SQLite file at ``path`` holds (0 if there is none)."""
    if not path.exists():
        return 0
    with sqlite3.connect(path) as connection:
        (count,) = connection.execute("SELECT count(*) FROM executions").fetchone()
    return int(count)


@pytest.mark.parametrize(("stored", "shown"), [
    (b'{"__durable__": "decimal", "v": "1.2.3"}', "'1.2.3' is not a decimal number"),
    (b'{"__durable__": "uuid", "v": "x"}', "badly formed hexadecimal UUID string"),
    (b'{"__durable__": "timedelta", "v": [1e300, 0, 0]}', "too large"),
    (b'{"__durable__": "bytes", "v": "!!!!"}', "Only base64 data is allowed"),
    (b'{"__durable__": "dict", "v": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply to read"),
    (b"\xff", "invalid start byte"),
], ids=["decimal", "uuid", "timedelta", "base64", "deep", "not utf-8"])
def test_show_marks_a_payload_it_cannot_decode_and_shows_the_rest(project: Path, stored: bytes, shown: str) -> None:
    execution_id = durable("enqueue", "app:hello", "--input", "1", cwd=project).stdout.strip()
    with sqlite3.connect(project / "test.db") as connection:
        connection.execute("UPDATE executions SET input = ? WHERE execution_id = ?", (stored, execution_id))
    text = durable("executions", "show", execution_id, cwd=project)
    assert text.returncode == 0, text.stderr
    lines = dict(line.split(None, 1) for line in text.stdout.splitlines())
    assert lines["status:"] == "ready" and lines["input:"].startswith("<undecodable 'json' payload: invalid 'json' payload: ")
    assert shown in lines["input:"]
    as_json = durable("executions", "show", execution_id, "--json", cwd=project)
    assert json.loads(as_json.stdout)["input"] == lines["input:"]


def test_enqueue_with_a_priority_and_list_shows_it(project: Path) -> None:
    urgent = durable("enqueue", "app:hello", "--priority", "1000000", "--queue", "fast", cwd=project).stdout.strip()
    plain = durable("enqueue", "app:hello", cwd=project).stdout.strip()
    listed = durable("executions", "list", "--json", cwd=project)
    assert listed.returncode == 0, listed.stderr
    shown = {row["execution_id"]: (row["priority"], row["queue"]) for row in map(json.loads, listed.stdout.splitlines())}
    assert shown == {urgent: (1_000_000, "fast"), plain: (0, "default")}


def test_enqueue_with_a_delay_or_at_a_time_is_due_then(project: Path) -> None:
    delayed = durable("enqueue", "app:hello", "--delay", "1.5h", cwd=project).stdout.strip()
    at = durable("enqueue", "app:hello", "--at", "2030-12-24T09:00:00+01:00", cwd=project).stdout.strip()
    with sqlite3.connect(project / "test.db") as connection:
        stored = dict((row[0], row[1:]) for row in connection.execute(
            "SELECT execution_id, status, created_at, start_at, ready_at FROM executions"))
    status, created, start, ready = stored[delayed]
    assert (status, start - created, ready) == ("ready", pytest.approx(5400), start)
    assert stored[at][2:] == (datetime.fromisoformat("2030-12-24T08:00:00Z").timestamp(),) * 2


def test_a_module_that_fails_to_import_keeps_its_traceback(project: Path) -> None:
    (project / "broken.py").write_text("import not_installed_anywhere\n")
    result = durable("worker", "broken:executor", cwd=project)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "No module named 'not_installed_anywhere'" in result.stderr


def test_a_storage_confined_to_one_process_is_warned_about(project: Path) -> None:
    (project / "durable.toml").write_text('[storage]\nname = "memory"\n')
    for result in (durable("executions", "list", cwd=project), durable("enqueue", "app:hello", cwd=project)):
        assert result.returncode == 0
        assert result.stderr.startswith("warning: this storage keeps executions inside one process")


def test_no_arguments_prints_the_help(project: Path) -> None:
    result = durable(cwd=project)
    assert result.returncode == 0 and "Commands:" in result.stdout and "demo" in result.stdout


# ----------------------------------------------------------------------------- operating executions


def test_worker_enqueue_and_every_executions_command(project: Path) -> None:
    log = project / "worker.log"
    worker = start("worker", "app:executor", cwd=project, log=log)
    try:
        wait_for(log, "stop it with Ctrl-C or SIGTERM")
        assert "tasks: hello (task), boom (task), slow (task), family (parent), wait (sleeping)" in log.read_text()

        done = durable("enqueue", "app:hello", "--input", '{"a": 1}', "--wait", cwd=project)
        assert done.returncode == 0, done.stderr
        hello_id, outcome = done.stdout.splitlines()
        assert outcome == 'completed: {"hello": {"a": 1}}'
        assert "hello: completed" in done.stderr and "no worker" not in done.stderr  # progress

        failed = durable("enqueue", "app:boom", "--wait", cwd=project)
        assert failed.returncode == 1 and failed.stdout.splitlines()[1] == "failed: boom"

        first = durable("enqueue", "app:hello", "--input", "1", "--idempotency-key", "k", cwd=project).stdout
        assert durable("enqueue", "app:hello", "--input", "2", "--idempotency-key", "k", cwd=project).stdout == first

        family = durable("enqueue", "app:family", "--input", "5", "--wait", cwd=project)
        family_id = family.stdout.splitlines()[0]
        assert family.stdout.splitlines()[1].startswith('completed: {"output": 5, "children": [')
        assert "family: completed, 5 children: 5 completed" in family.stderr  # many children: counted
        as_json = json.loads(durable("executions", "tree", family_id, "--json", cwd=project).stdout)
        assert (as_json["task_id"], as_json["execution_id"], as_json["status"], as_json["finalize"]) == (
            "family", family_id, "completed", None)
        assert [(child["task_id"], child["status"], child["children"]) for child in as_json["children"]] == [
            ("hello", "completed", [])] * 5
        tree = durable("executions", "tree", family_id, cwd=project).stdout.splitlines()
        assert tree[0] == f"family {family_id} completed  <"
        assert all(line.startswith("├── hello te_") and line.endswith(" completed") for line in tree[1:5])
        assert tree[5].startswith("└── hello te_") and len(tree) == 6
        child_id = tree[5].split()[2]
        assert durable("executions", "tree", child_id, cwd=project).stdout.splitlines()[5].endswith("completed  <")

        listed = durable("executions", "list", "--task", "hello", "--status", "completed", cwd=project).stdout.splitlines()
        assert listed[0].split() == ["EXECUTION", "TASK", "STATUS", "RETRIES", "CREATED", "(UTC)", "FINISHED", "(UTC)", "PARENT"]
        assert len(listed) == 1 + 7 and all(" hello " in line for line in listed[1:])
        rows = [json.loads(line) for line in durable("executions", "list", "--status", "errored", "--json", cwd=project).stdout.splitlines()]
        assert [(row["task_id"], row["error"]) for row in rows] == [("boom", "boom")]
        assert all(is_iso_utc(rows[0][key]) for key in ("created_at", "finished_at"))

        shown = json.loads(durable("executions", "show", hello_id, "--json", cwd=project).stdout)
        assert (shown["status"], shown["input"], shown["output"]) == ("completed", {"a": 1}, {"hello": {"a": 1}})
        assert all(is_iso_utc(shown[key]) for key in ("created_at", "updated_at", "started_at", "finished_at"))
        lines = [line.split(None, 1) for line in durable("executions", "show", hello_id, cwd=project).stdout.splitlines()]
        assert ["output:", '{"hello": {"a": 1}}'] in lines and ["status:", "completed"] in lines

        sleeping_id = durable("enqueue", "app:wait", "--input", '"u1"', cwd=project).stdout.strip()
        woken = durable("executions", "wakeup", "app:wait", "u1", "--output", '{"ok": true}', cwd=project)
        assert woken.stdout == f"wait {sleeping_id}: completed\n"

        slow_id = durable("enqueue", "app:slow", cwd=project).stdout.strip()
        wait_for(log, f"claimed slow [{slow_id}]")
        assert durable("executions", "cancel", slow_id, cwd=project).stdout == f"cancelled slow {slow_id}\n"
        again = durable("executions", "cancel", slow_id, cwd=project).stdout
        assert again == f"slow {slow_id} already finished (cancelled); nothing to cancel\n"

        counted = durable("executions", "gc", "--older-than", "0s", "--dry-run", cwd=project)
        assert counted.stdout.startswith("would delete 11 executions of trees finished before ")
        deleted = durable("executions", "gc", "--older-than", "0s", cwd=project)
        assert deleted.stdout.startswith("deleted 11 executions of trees finished before ")
        assert durable("executions", "list", cwd=project).stdout == "no executions found\n"
    finally:
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=20) == 0
    text = log.read_text()
    assert f"committed hello [{hello_id}] running -> completed" in text
    assert "SIGINT received: stopping" in text and text.endswith("stopped\n")


def test_enqueue_wait_says_when_no_worker_runs_it_and_goes_on_when_one_starts(project: Path) -> None:
    (project / "durable.toml").write_text(SQLITE_CONFIG + "heartbeat_interval = 0.5\n")  # the hint's delay
    log = project / "enqueue.log"
    waiting = start("enqueue", "app:hello", "--input", "1", "--wait", cwd=project, log=log)
    worker = None
    try:
        wait_for(log, "no worker is running")  # printed once the registry of executors has shown none
        assert ("no worker is running (durable workers lists none), so nothing runs hello; start one with: "
                "durable worker app:executor\n") in log.read_text()
        worker = start("worker", "app:executor", "--quiet", cwd=project, log=project / "worker.log")
        assert waiting.wait(timeout=30) == 0
        assert waiting.stdout is not None and waiting.stdout.read().decode().splitlines()[1] == 'completed: {"hello": 1}'
        assert log.read_text().count("no worker") == 1
    finally:
        waiting.kill()
        if worker is not None:
            worker.send_signal(signal.SIGINT)
            assert worker.wait(timeout=20) == 0


def is_iso_utc(text: str) -> bool:
    """Whether ``text`` is an ISO 8601 time with the UTC offset, as every JSON output has them."""
    return "T" in text and datetime.fromisoformat(text).utcoffset() == timedelta(0)


NAMED_APP = '''
from durable_core import DurableExecutor

executor = DurableExecutor.from_config()

@executor.task(id="say_hello", timeout=5)
async def greet(ctx, input):
    return input

nap = executor.sleeping_task(id="long_nap", timeout=60)
'''


def test_a_task_argument_is_its_id_or_its_variable_in_every_command(project: Path) -> None:
    (project / "named.py").write_text(NAMED_APP)
    by_variable = durable("enqueue", "named:greet", cwd=project).stdout.strip()
    by_id = durable("enqueue", "named:say_hello", cwd=project).stdout.strip()
    for task in ("say_hello", "named:greet"):
        listed = durable("executions", "list", "--task", task, "--json", cwd=project).stdout.splitlines()
        assert [json.loads(line)["execution_id"] for line in listed] == [by_id, by_variable], task
    sleeping = durable("enqueue", "named:long_nap", "--input", '"a"', cwd=project).stdout.strip()
    woken = durable("executions", "wakeup", "named:nap", "a", "--output", "1", cwd=project)
    assert woken.stdout == f"long_nap {sleeping}: completed\n", woken.stderr
    wrong = durable("executions", "list", "--task", "named:gret", cwd=project)
    assert (wrong.returncode, wrong.stderr) == (2, "error: module 'named' has no task 'gret'; did you mean 'greet'? "
                                                   "its tasks: greet, nap\n")


def in_terminal(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``durable ARGS`` with its stdout and stderr on a pseudo-terminal; what it wrote there."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "durable_core.cli", *args], cwd=cwd, env=environment(env),
                               stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process is gone and the terminal closed
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=60) in (0, 1)
    return output.decode()


def test_colour_only_on_a_terminal_and_never_with_no_color(project: Path) -> None:
    durable("enqueue", "app:hello", cwd=project)
    coloured = "\x1b[36mready\x1b[0m"
    assert coloured in in_terminal("executions", "list", cwd=project)
    assert "ready" in in_terminal("executions", "list", cwd=project, env={"NO_COLOR": "1"})
    assert "\x1b[" not in in_terminal("executions", "list", cwd=project, env={"NO_COLOR": "1"})
    piped = durable("executions", "list", cwd=project).stdout
    assert " ready " in piped and "\x1b[" not in piped


def test_install_keeps_pip_s_output_in_a_log_and_shows_its_error(project: Path) -> None:
    offline = {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "TMPDIR": str(project)}
    failed = durable("install", "durable-storage-nowhere", cwd=project, env=offline)
    assert (failed.returncode, failed.stdout) == (1, "")
    running, error = failed.stderr.splitlines()  # nothing of pip's own output
    assert running.startswith("running: ") and running.endswith(" install durable-storage-nowhere")
    assert error.startswith("error: pip failed (exit code 1): ERROR: No matching distribution found for "
                            "durable-storage-nowhere; its whole output: ")
    log = Path(error.rsplit(": ", 1)[1])
    assert log.parent == project and "Could not find a version that satisfies the requirement" in log.read_text()
    shown = in_terminal("install", "durable-storage-nowhere", cwd=project, env=offline)
    assert "\r| pip is working (0s)" in shown and "error: pip failed (exit code 1)" in shown


RETRYING_APP = '''
from pathlib import Path
from durable_core import DurableExecutor, ParentTaskResult, child_task

executor = DurableExecutor.from_config()

@executor.task(id="once", timeout=5)
async def once(ctx, input):
    marker = Path("failed-once")
    if not marker.exists():
        marker.touch()
        return {}["file"]
    return "ok"

@executor.parent_task(id="parent", timeout=5)
async def parent(ctx, input):
    return ParentTaskResult(output=None, children=[child_task(once, None)])
'''


def test_a_failure_is_shown_with_its_type_and_traceback_and_can_be_retried(project: Path) -> None:
    (project / "retrying.py").write_text(RETRYING_APP)
    log = project / "worker.log"
    worker = start("worker", "retrying:executor", cwd=project, log=log)
    try:
        wait_for(log, "stop it with Ctrl-C or SIGTERM")
        failed = durable("enqueue", "retrying:once", "--wait", cwd=project)
        once_id, outcome = failed.stdout.splitlines()
        assert outcome == "failed: KeyError: 'file'"
        wait_for(log, f"task once execution {once_id} attempt 0 failed: KeyError: 'file'; not retried (status failed)")

        shown = durable("executions", "show", once_id, cwd=project).stdout
        lines = [line.split(None, 1) for line in shown.splitlines()]
        assert ["error:", "KeyError: 'file'"] in lines
        assert ["error_type:", "generic"] in lines and ["error_type_name:", "builtins.KeyError"] in lines
        traceback = shown.split("traceback:\n", 1)[1]
        assert traceback.startswith("  Traceback (most recent call last):\n")
        assert '      return {}["file"]\n' in traceback and traceback.endswith("\n  KeyError: 'file'\n")
        error = json.loads(durable("executions", "show", once_id, "--json", cwd=project).stdout)["error"]
        assert (error["type_name"], error["message"]) == ("builtins.KeyError", "KeyError: 'file'")
        assert error["traceback"].endswith("KeyError: 'file'\n")

        retried = durable("executions", "retry", once_id, cwd=project)
        assert retried.stdout == f"retried once {once_id}: ready, attempt 1 (was failed)\n", retried.stderr
        deadline = time.monotonic() + 20
        while (shown_json := json.loads(durable("executions", "show", once_id, "--json", cwd=project).stdout))[
                "status"] != "completed":
            assert time.monotonic() < deadline, shown_json
        assert (shown_json["output"], shown_json["retry_attempts"], shown_json["error"]) == ("ok", 1, None)

        refused = durable("executions", "retry", once_id, cwd=project)
        assert (refused.returncode, refused.stdout) == (2, "")
        assert refused.stderr == (f"error: once {once_id} is completed; only an execution that ended failed, "
                                  "timed_out, cancelled or finalize_failed can be retried\n")
        family = durable("enqueue", "retrying:parent", "--wait", cwd=project).stdout.splitlines()[0]
        child_id = durable("executions", "tree", family, cwd=project).stdout.splitlines()[1].split()[2]
        refused = durable("executions", "retry", child_id, cwd=project)
        assert refused.returncode == 2
        assert refused.stderr == (f"error: once {child_id} is a child of parent {family}; only a top-level "
                                  f"execution can be retried: retry its root, parent {family}\n")
    finally:
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=20) == 0


def test_sigterm_hands_running_executions_back_at_once(project: Path) -> None:
    log = project / "worker.log"
    worker = start("worker", "app:executor", "--quiet", cwd=project, log=log)
    wait_for(log, "stop it with")
    slow_id = durable("enqueue", "app:slow", cwd=project).stdout.strip()
    deadline = time.monotonic() + 20
    while json.loads(durable("executions", "show", slow_id, "--json", cwd=project).stdout)["status"] != "running":
        assert time.monotonic() < deadline
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert "waiting up to 0.5s for 1 running executions, then handing them back" in log.read_text()
    assert "claimed" not in log.read_text()  # --quiet
    assert json.loads(durable("executions", "show", slow_id, "--json", cwd=project).stdout)["status"] == "ready"


def test_a_second_sigterm_hands_running_executions_back_at_once(project: Path) -> None:
    (project / "durable.toml").write_text(SQLITE_CONFIG.replace("shutdown_timeout = 0.5", "shutdown_timeout = 600"))
    log = project / "worker.log"
    worker = start("worker", "app:executor", cwd=project, log=log)
    wait_for(log, "stop it with")
    slow_id = durable("enqueue", "app:slow", cwd=project).stdout.strip()
    wait_for(log, f"claimed slow [{slow_id}]")
    worker.send_signal(signal.SIGTERM)
    wait_for(log, "waiting up to 600s for 1 running executions")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 130
    text = log.read_text()
    assert "SIGTERM received again: handing the running executions back now\n" in text
    assert f"released slow [{slow_id}] running -> ready\nstopped\n" in text
    shown = json.loads(durable("executions", "show", slow_id, "--json", cwd=project).stdout)
    assert (shown["status"], shown["retry_attempts"]) == ("ready", 0)
    with sqlite3.connect(project / "test.db") as connection:
        assert connection.execute("SELECT lease_expirations FROM executions").fetchone() == (0,)


def test_workers_lists_live_executors_and_what_they_run(project: Path) -> None:
    assert durable("workers", cwd=project).stdout == "no live workers\n"
    log = project / "worker.log"
    worker = start("worker", "app:executor", cwd=project, log=log)
    try:
        wait_for(log, "stop it with")
        slow_id = durable("enqueue", "app:slow", cwd=project).stdout.strip()
        wait_for(log, f"claimed slow [{slow_id}]")
        deadline = time.monotonic() + 20
        while (live := [json.loads(line) for line in durable("workers", "--json", cwd=project).stdout.splitlines()]
               ) == [] or live[0]["running"] != 1:  # the next heartbeat counts the claimed run
            assert time.monotonic() < deadline, live
        (shown,) = live
        assert (shown["host"], shown["pid"]) == (socket.gethostname(), worker.pid)
        assert is_iso_utc(shown["started_at"]) and is_iso_utc(shown["heartbeat_at"])
        table = durable("workers", cwd=project).stdout.splitlines()
        assert table[0].split() == ["EXECUTOR", "HOST", "PID", "STARTED", "(UTC)", "LAST", "HEARTBEAT", "(UTC)",
                                    "RUNNING"]
        assert table[1].split()[:3] == [shown["executor_id"], socket.gethostname(), str(worker.pid)]
        listed = durable("executions", "list", "--executor", shown["executor_id"], "--json", cwd=project).stdout
        assert [json.loads(line)["execution_id"] for line in listed.splitlines()] == [slow_id]
        assert durable("executions", "list", "--executor", "de_nobody", cwd=project).stdout == "no executions found\n"
        running = json.loads(durable("executions", "show", slow_id, "--json", cwd=project).stdout)
        assert (running["status"], running["executor_id"]) == ("running", shown["executor_id"])
    finally:
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=20) == 0


# ----------------------------------------------------------------------------- the main job


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_demo_resumes_after_an_interruption(tmp_path: Path, stop: signal.Signals) -> None:
    log = tmp_path / "demo.log"
    demo = start("demo", cwd=tmp_path, log=log)
    wait_for(log, "extract_title: running")
    demo.send_signal(stop)
    assert demo.wait(timeout=20) == (130 if stop == signal.SIGINT else -signal.SIGKILL)
    first_line = demo.stdout.read().decode().splitlines()[0] if demo.stdout else ""
    workflow_id = first_line.split()[1]
    if stop == signal.SIGINT:  # what was saved where, and how to resume
        saved = log.read_text().splitlines()[-1]
        assert saved.startswith(f"saved workflow {workflow_id} in storage 'sqlite' (path='durable.db'): "
                                "done: upload_file's upload")
        assert "; handed back to run again: " in saved and saved.endswith("summarize_file; resume it with: durable demo")
    resumed = durable("demo", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.startswith("resuming it: skipping upload_file's upload")  # the steps already done
    assert "(already done); running " in resumed.stderr.splitlines()[0]
    assert resumed.stdout.splitlines() == [
        first_line,  # the same workflow, found by its idempotency key
        'completed: {"file": "report.pdf", "title": "Title of report.pdf", "summary": "Summary of report.pdf"}',
    ]
    assert (tmp_path / "durable.db").is_file()


# ----------------------------------------------------------------------------- plugins


def fake_distribution(site: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """An installed distribution (a dist-info folder) with ``durable`` entry points, on ``site``."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[durable]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


def test_plugins_lists_installed_and_builtin_plugins(project: Path) -> None:
    rows = {row["name"]: row for row in json.loads(durable("plugins", "--all", "--json", cwd=project).stdout)}
    assert rows["memory"] | {"version": None} == {"name": "memory", "distribution": "durable-storage-memory", "version": None,
                                                  "provides": ["storage:memory"], "status": "ok", "error": None}
    assert rows["json"]["distribution"] is None and rows["json"]["provides"] == ["serializer:json"]
    table = durable("plugins", cwd=project).stdout.splitlines()
    assert table[0].split() == ["NAME", "DISTRIBUTION", "VERSION", "PROVIDES", "STATUS"]
    assert any(line.split()[:2] == ["memory", "durable-storage-memory"] and line.endswith("ok") for line in table)
    assert not any(line.startswith("json ") for line in table)  # built-ins only with --all


def test_a_broken_plugin_is_an_error_row_and_breaks_no_command(project: Path) -> None:
    site = project / "site"
    fake_distribution(site, "fakeplug", {"broken": "fakeplug_broken", "hello": "fakeplug_hello"}, {
        "fakeplug_broken": "raise ImportError('its backend library is missing')\n",
        "fakeplug_hello": """
            import click
            from durable_core import hookimpl

            @hookimpl
            def durable_register_commands(cli):
                @cli.command()
                def hello():
                    click.echo("hello from a plugin")

                @cli.command()
                def worker():
                    click.echo("hijacked")
        """,
    })
    env = {"PYTHONPATH": str(site)}
    listed = durable("plugins", cwd=project, env=env)
    assert listed.returncode == 0
    broken = next(line for line in listed.stdout.splitlines() if line.startswith("broken "))
    assert broken.split()[1:3] == ["fakeplug", "1.0"]
    assert broken.endswith("error: ImportError: its backend library is missing")
    assert durable("hello", cwd=project, env=env).stdout == "hello from a plugin\n"  # durable_register_commands
    assert "Run the tasks of MODULE:EXECUTOR" in durable("worker", "--help", cwd=project, env=env).stdout
    assert durable("config", "get", "storage.name", cwd=project, env=env).stdout == "sqlite\n"


def test_two_plugins_registering_one_storage_name_are_listed_and_reported(project: Path) -> None:
    site = project / "site"
    fake_distribution(site, "fastmem", {"fastmem": "fastmem_plugin"}, {"fastmem_plugin": """
        from durable_core import hookimpl

        @hookimpl
        def durable_register_storages(register):
            register("memory", dict)
    """})
    env = {"PYTHONPATH": str(site)}
    listed = durable("plugins", cwd=project, env=env)
    assert listed.returncode == 1 and any(line.startswith("fastmem ") for line in listed.stdout.splitlines())
    assert listed.stderr.startswith("error: storage 'memory' is registered by two plugins: ")
    assert "'fastmem' (fastmem 1.0)" in listed.stderr and "'memory' (durable-storage-memory " in listed.stderr
    failed = durable("executions", "list", cwd=project, env=env)
    assert (failed.returncode, failed.stderr) == (2, listed.stderr)


def test_worker_log_format_json_prints_one_object_per_line(project: Path) -> None:
    log = project / "worker.log"
    worker = start("worker", "app:executor", "--log-format", "json", cwd=project, log=log)
    try:
        wait_for(log, "stop it with Ctrl-C or SIGTERM")
        boom_id = durable("enqueue", "app:boom", "--wait", cwd=project).stdout.split()[0]
        wait_for(log, f'"execution": "{boom_id}", "attempt": 0, "previous_status": "running", "status": "failed"')
    finally:
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=20) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # every line is one object
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    assert lines[0]["message"].startswith("worker de_") and lines[-1]["message"] == "stopped"
    boom = [line for line in lines if line.get("execution") == boom_id]
    assert [(line["level"], line.get("kind"), line.get("attempt")) for line in boom] == [
        ("DEBUG", "claimed", 0), ("DEBUG", "committed", 0), ("WARNING", None, 0)]  # enqueued by another process
    committed = boom[1]
    assert (committed["task"], committed["status"], committed["error"]) == ("boom", "failed", "boom")
    assert boom[2]["message"].endswith("attempt 0 failed: boom; not retried (status failed)")
    assert boom[2]["time"].endswith("+00:00")


# ----------------------------------------------------------------------------- metrics (durable-prometheus)

prometheus_installed = pytest.mark.skipif(
    not any(ep.name == "prometheus" for ep in importlib.metadata.entry_points(group="durable")),
    reason="durable-prometheus is not installed (requirements-dev.txt installs it)")


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


@prometheus_installed
def test_worker_metrics_port_serves_prometheus_metrics(project: Path) -> None:
    log = project / "worker.log"
    worker = start("worker", "app:executor", "--metrics-port", "0", "--quiet", cwd=project, log=log)
    try:
        wait_for(log, "stop it with Ctrl-C or SIGTERM")
        port = re.search(r"serving metrics at http://\S+:(\d+)/metrics", log.read_text()).group(1)
        assert durable("enqueue", "app:hello", "--input", "1", "--wait", cwd=project).returncode == 0
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
        assert samples[("durable_executions_finished_total", frozenset({("task", "hello"), ("status", "completed")}))] == 1
        assert samples[("durable_attempt_duration_seconds_count", frozenset({("task", "hello"), ("outcome", "completed")}))] == 1
    finally:
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=20) == 0


@prometheus_installed
def test_a_metrics_port_in_use_is_one_line(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = durable("worker", "app:executor", "--metrics-port", str(port), cwd=project)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"error: cannot serve metrics on port {port}: Address already in use; choose another "
                             "--metrics-port\n")


def test_a_metrics_port_without_a_metrics_plugin_says_what_to_install(project: Path) -> None:
    result = durable("worker", "app:executor", "--metrics-port", "9464", cwd=project,
                     env={"DURABLE_DISABLE_PLUGINS": "prometheus"})
    assert (result.returncode, result.stderr) == (
        2, "error: --metrics-port needs a plugin that serves /metrics; run: durable install prometheus\n")


@prometheus_installed
def test_durable_serve_answers_metrics_when_prometheus_is_installed(project: Path) -> None:
    pytest.importorskip("durable_web")
    log = project / "serve.log"
    server = start("serve", "--port", "0", cwd=project, log=log)
    try:
        wait_for(log, "stop it with Ctrl-C or SIGTERM")
        url = re.search(r"serving the dashboard at (\S+)/ ", log.read_text()).group(1)
        deadline = time.monotonic() + 10  # the storage is looked at as the server starts
        while (ready := scrape(f"{url}/metrics").get(("durable_executions", frozenset({("status", "ready")})))) != 0:
            assert time.monotonic() < deadline, ready
            time.sleep(0.05)
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=20) == 0


# ----------------------------------------------------------------------------- traces (durable-otel)

otel_installed = pytest.mark.skipif(
    not any(ep.name == "otel" for ep in importlib.metadata.entry_points(group="durable")),
    reason="durable-otel is not installed (requirements-dev.txt installs it)")


@otel_installed
def test_an_unreachable_trace_exporter_is_one_warning_and_the_worker_runs_on(project: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    log = project / "worker.log"
    worker = start("worker", "app:executor", "--quiet", cwd=project, log=log, env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_TIMEOUT": "1", "OTEL_BSP_SCHEDULE_DELAY": "50"})
    try:
        wait_for(log, f"the OpenTelemetry exporter endpoint {endpoint} is unreachable (")
        for input in range(2):
            assert durable("enqueue", "app:hello", "--input", str(input), "--wait", cwd=project).returncode == 0
    finally:
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=30) == 0
    assert log.read_text().count(f"{endpoint} is unreachable") == 1
