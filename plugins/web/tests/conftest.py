"""A real server (Hypercorn on a free port, in a thread of its own) on a SQLite file, and a real
``durable worker`` process running the tasks of ``dashboard_tasks``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from durable_web import serve

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))  # dashboard_tasks, as the worker imports it

import dashboard_tasks  # noqa: E402


@dataclass
class Server:
    url: str
    db: Path
    config: Path
    token: str | None
    stop: Any
    workers: list[subprocess.Popen[str]] = field(default_factory=list)

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10, **kwargs)

    def start_worker(self) -> subprocess.Popen[str]:
        """``durable worker dashboard_tasks:executor`` on the same storage; stopped at the end."""
        worker = subprocess.Popen(
            [sys.executable, "-m", "durable_core.cli", "--config", str(self.config), "worker", "-q",
             "dashboard_tasks:executor"],
            cwd=TESTS, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.workers.append(worker)
        return worker

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.send_signal(signal.SIGINT)
        for worker in self.workers:
            worker.wait(timeout=30)
        self.workers.clear()


@contextmanager
def running_server(directory: Path, *, token: str | None = None) -> Iterator[Server]:
    """The server for a fresh SQLite file in ``directory``, refreshing live views every 0.2 s."""
    db = directory / "durable.db"
    config = directory / "durable.toml"
    config.write_text(f'[storage]\nname = "sqlite"\n\n[storage.options]\npath = "{db.as_posix()}"\n')
    executor = dashboard_tasks.make_executor("sqlite", {"path": str(db)})
    started: list[Any] = []
    ready = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, executor, port=0, token=token, stop=stop, refresh=0.2,
                                                stats_interval=0.5))
            started.extend([binds[0], stop, trio.lowlevel.current_trio_token()])
            ready.set()

    def thread() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported to the test, not lost in the thread
            failure.append(exc)
            ready.set()

    runner = threading.Thread(target=thread, daemon=True)
    runner.start()
    ready.wait(30)
    if failure:
        raise failure[0]
    url, stop, trio_token = started
    server = Server(url, db, config, token, partial(trio.from_thread.run_sync, stop.set, trio_token=trio_token))
    try:
        yield server
    finally:
        server.stop_workers()
        server.stop()
        runner.join(30)
        assert not runner.is_alive(), "the server did not stop"
        assert not failure, failure


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server and one worker for a whole test module."""
    with running_server(tmp_path_factory.mktemp("web")) as running:
        running.start_worker()
        yield running
