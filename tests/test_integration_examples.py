"""The integration examples (examples/integration) served for real and driven over HTTP: uvicorn
serving the FastAPI app with its executor in-process, and the Flask app's werkzeug server beside a
``durable worker`` process on the same SQLite file. Every process starts once, at the start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from durable_core.client import Client

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 30.0
"""Seconds any one condition may take to come true (a process starting on a busy 2-core machine
takes one or two)."""
SHUTDOWN_TIMEOUT = 0.5


@dataclass
class Workspace:
    """A ``durable.toml`` on a fresh SQLite file, named to every process by ``DURABLE_CONFIG``."""

    dir: Path

    def __post_init__(self) -> None:
        self.db = self.dir / "app.db"
        config = self.dir / "durable.toml"
        config.write_text(f'[storage]\nname = "sqlite"\n\n[storage.options]\npath = "{self.db.as_posix()}"\n\n'
                          f"[executor]\nshutdown_timeout = {SHUTDOWN_TIMEOUT}\n", encoding="utf-8")
        self.env = {**os.environ, "DURABLE_CONFIG": str(config)}

    def client(self) -> Client:
        return Client("sqlite", storage_options={"path": str(self.db)})


@dataclass
class Process:
    """``python -m ARGS`` started in the repository's root, its output in a log file."""

    name: str
    args: list[str]
    ws: Workspace

    def __post_init__(self) -> None:
        self.log = self.ws.dir / f"{self.name}.log"
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen([sys.executable, "-m", *self.args], cwd=ROOT, env=self.ws.env,
                                          stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return f"--- {self.name} output:\n{self.log.read_text(errors='replace')}"

    def stop(self) -> None:
        """SIGTERM if it still runs (a graceful shutdown), SIGKILL if that takes too long."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def until(condition: Callable[[], Any], what: str, process: Process | None = None) -> Any:
    """Poll ``condition`` until it returns something true (and return it), for at most DEADLINE
    seconds; fails early if ``process`` exits meanwhile."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if process is not None and process.popen.poll() is not None:
            pytest.fail(f"{what}: {process.name} exited with code {process.popen.returncode}\n{process.output()}")
        if result := condition():
            return result
        time.sleep(0.02)
    pytest.fail(f"{what}: not within {DEADLINE} s" + (f"\n{process.output()}" if process else ""))


class Server(Process):
    """A web server process, told to serve on a free port of 127.0.0.1, and an HTTP client of it."""

    def __init__(self, name: str, args: list[str], ws: Workspace):
        port = free_port()
        super().__init__(name, [*args, "--host", "127.0.0.1", "--port", str(port)], ws)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=DEADLINE)

    def wait_until_serving(self) -> None:
        def answers() -> bool:
            try:
                self.http.get("/executions/te_probe")
            except httpx.TransportError:
                return False
            return True

        until(answers, f"{self.name} answering", self)

    def stop(self) -> None:
        super().stop()
        self.http.close()


@dataclass
class Apps:
    processes: list[Process]
    fastapi: Server
    """uvicorn serving the FastAPI app, its executor in-process."""
    fastapi_to_stop: Server
    """Another, on a file of its own, for the test that stops it."""
    flask: Server
    """werkzeug serving the Flask app, beside a ``durable worker`` of the tasks on the same file."""


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    """Every process of this module, started at once (each takes a second or two to start)."""
    fastapi_ws, stopped_ws, flask_ws = (Workspace(tmp_path_factory.mktemp(name))
                                        for name in ("fastapi", "stopped", "flask"))
    uvicorn = ["uvicorn", "examples.integration.fastapi_app:app"]
    processes: list[Process] = []
    try:
        processes.append(Server("uvicorn", uvicorn, fastapi_ws))
        processes.append(Server("uvicorn_to_stop", uvicorn, stopped_ws))
        processes.append(Process("worker", ["durable_core.cli", "worker", "examples.integration.tasks:executor"],
                                 flask_ws))
        processes.append(Server("flask", ["flask", "--app", "examples.integration.flask_app", "run"], flask_ws))
        servers = [process for process in processes if isinstance(process, Server)]
        for server in servers:
            server.wait_until_serving()
        yield Apps(processes, *servers)
    finally:
        for process in processes:
            process.stop()


@pytest.fixture(autouse=True)
def output_if_failed(apps: Apps) -> Iterator[None]:
    """Every process's output so far, which pytest shows with a failed test (only)."""
    yield
    for process in apps.processes:
        print(process.output())


def accepted(response: httpx.Response) -> str:
    """The execution id of a ``202 Accepted`` enqueue."""
    assert response.status_code == 202, response.text
    return response.json()["id"]


def status_of(http: httpx.Client, execution_id: str, **params: Any) -> dict[str, Any]:
    response = http.get(f"/executions/{execution_id}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


# ----------------------------------------------------------------------------- FastAPI, executor in-process


def test_fastapi_app_runs_enqueued_work_in_process_and_reports_it(apps: Apps):
    http = apps.fastapi.http
    album = {"album": "holidays", "max_side": 100, "images": [
        {"image": "beach.jpg", "width": 4000, "height": 3000},
        {"image": "broken.jpg", "width": 0, "height": 3000},
    ]}
    album_id = accepted(http.post("/albums", json=album))
    finished = status_of(http, album_id, wait=DEADLINE)
    assert finished["status"] == "completed", finished
    assert finished["output"]["thumbnails"] == [{"image": "beach.jpg", "width": 100, "height": 75}]
    assert len(finished["output"]["failed"]) == 1  # the broken image failed at once (non-retryable)

    unknown = http.get("/executions/te_doesnotexist")
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "no execution te_doesnotexist"})


def test_fastapi_webhook_wakes_the_checkout_waiting_for_it(apps: Apps):
    http = apps.fastapi.http
    order_id = accepted(http.post("/orders/o-17/checkout"))
    assert accepted(http.post("/orders/o-17/checkout")) == order_id  # idempotent per order

    def provider_delivers() -> httpx.Response | None:  # a 404 makes the provider call again
        response = http.post("/webhooks/payments", json={"order_id": "o-17", "amount": 42.5})
        return response if response.status_code != 404 else None

    delivered = until(provider_delivers, "the webhook finding the waiting checkout")
    assert (delivered.status_code, delivered.json()) == (200, {"status": "completed"})
    finished = status_of(http, order_id, wait=DEADLINE)
    assert (finished["status"], finished["output"]) == ("completed", {"order": "o-17", "paid": {"amount": 42.5}})

    nobody_waits = http.post("/webhooks/payments", json={"order_id": "o-18", "amount": 1})
    assert nobody_waits.status_code == 404
    assert "payment-o-18" in nobody_waits.json()["detail"]


def test_sigterm_hands_the_running_executions_back_for_the_next_worker(apps: Apps):
    server, http = apps.fastapi_to_stop, apps.fastapi_to_stop.http
    report_id = accepted(http.post("/reports", json={"name": "sales", "rows": 6000}))  # 10 minutes
    until(lambda: status_of(http, report_id)["status"] == "running", "the report running")
    stopping_at = time.monotonic()
    server.popen.send_signal(signal.SIGTERM)
    # uvicorn exits by the signal it caught, once the app's lifespan has ended
    assert server.popen.wait(DEADLINE) == -signal.SIGTERM, server.output()
    assert "Application shutdown complete." in server.output()
    assert time.monotonic() - stopping_at < SHUTDOWN_TIMEOUT + 10  # not the report's 10 minutes
    with server.ws.client() as client:
        report = client.get(report_id)
    assert (report.status, report.error, report.retry_attempts) == ("ready", None, 0)  # not a failed attempt


# ----------------------------------------------------------------------------- Flask, a worker process


def test_flask_app_enqueues_by_task_id_for_a_worker_process(apps: Apps):
    http = apps.flask.http
    image = {"image": "beach.jpg", "width": 3000, "height": 4000}
    execution_id = accepted(http.post("/thumbnails", json=image, headers={"Idempotency-Key": "upload-1"}))
    assert accepted(http.post("/thumbnails", json=image, headers={"Idempotency-Key": "upload-1"})) == execution_id

    with apps.flask.ws.client() as client:
        assert client.wait(execution_id, timeout=DEADLINE).status == "completed"
    assert status_of(http, execution_id) == {
        "id": execution_id, "task_id": "resize_image", "status": "completed",
        "output": {"image": "beach.jpg", "width": 192, "height": 256}, "error": None,
    }
    unknown = http.get("/executions/te_doesnotexist")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "no execution te_doesnotexist"})


def test_the_worker_runs_what_the_flask_app_enqueued_with_the_tasks_own_options(apps: Apps):
    """The Flask app gives no timeout: the worker that claims the report applies the one
    generate_report declares (600 s), so a report of over a second completes."""
    report_id = accepted(apps.flask.http.post("/reports", json={"name": "weekly", "rows": 12}))
    with apps.flask.ws.client() as client:
        finished = client.wait(report_id, timeout=DEADLINE)
    assert (finished.status, finished.output) == ("completed", {"report": "weekly", "rows": 12, "attempt": 0})
