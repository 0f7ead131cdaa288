"""The integration examples (examples/integration) served for real: uvicorn serving the FastAPI app
with its executor in-process, and the Flask app's werkzeug server beside a ``durable worker``
process, on one SQLite file, driven over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    db: Path
    env: dict[str, str]
    logs: Path


def make_workspace(tmp: Path) -> Workspace:
    """A ``durable.toml`` on a fresh SQLite file, named to every process by ``DURABLE_CONFIG``."""
    db = tmp / "app.db"
    config = tmp / "durable.toml"
    config.write_text(f'[storage]\nname = "sqlite"\n\n[storage.options]\npath = "{db.as_posix()}"\n\n'
                      f"[executor]\nshutdown_timeout = {SHUTDOWN_TIMEOUT}\n", encoding="utf-8")
    return Workspace(db, {**os.environ, "DURABLE_CONFIG": str(config)}, tmp)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def until(condition: Callable[[], Any], what: str, process: subprocess.Popen[bytes] | None = None) -> Any:
    """Poll ``condition`` until it returns something true (and return it), for at most DEADLINE
    seconds; fails early if ``process`` exits meanwhile."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what}: the process exited with code {process.returncode}")
        if result := condition():
            return result
        time.sleep(0.02)
    pytest.fail(f"{what}: not within {DEADLINE} s")


@contextmanager
def started(name: str, args: list[str], ws: Workspace) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m ARGS`` in the repository's root; on the way out, stop it with SIGTERM if it
    still runs. Its output goes to ``NAME.log``, shown if the test fails."""
    log = ws.logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=ws.env, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        yield process
    except BaseException:
        print(f"--- {name} output:\n{log.read_text(errors='replace')}")
        raise
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def serving(process: subprocess.Popen[bytes], port: int) -> Iterator[httpx.Client]:
    """An HTTP client of the server ``process`` starts on ``port``, once it answers."""
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=DEADLINE)

    def answers() -> bool:
        try:
            http.get("/executions/te_probe")
        except httpx.TransportError:
            return False
        return True

    with http:
        until(answers, f"the server on port {port} answering", process)
        yield http


def accepted(response: httpx.Response) -> str:
    """The execution id of a ``202 Accepted`` enqueue."""
    assert response.status_code == 202, response.text
    return response.json()["id"]


def status_of(http: httpx.Client, execution_id: str, **params: Any) -> dict[str, Any]:
    response = http.get(f"/executions/{execution_id}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


# ----------------------------------------------------------------------------- FastAPI, executor in-process


@contextmanager
def fastapi_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client, Workspace]]:
    ws, port = make_workspace(tmp_path), free_port()
    command = ["uvicorn", "examples.integration.fastapi_app:app", "--host", "127.0.0.1", "--port", str(port)]
    with started("uvicorn", command, ws) as server, serving(server, port) as http:
        yield server, http, ws


@pytest.fixture(scope="module")
def fastapi_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with fastapi_server(tmp_path_factory.mktemp("fastapi")) as (_, http, _):
        yield http


def test_fastapi_app_runs_enqueued_work_in_process_and_reports_it(fastapi_app: httpx.Client):
    http = fastapi_app
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


def test_fastapi_webhook_wakes_the_checkout_waiting_for_it(fastapi_app: httpx.Client):
    http = fastapi_app
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


def test_sigterm_hands_the_running_executions_back_for_the_next_worker(tmp_path: Path):
    with fastapi_server(tmp_path) as (server, http, ws):
        report_id = accepted(http.post("/reports", json={"name": "sales", "rows": 6000}))  # 10 minutes
        until(lambda: status_of(http, report_id)["status"] == "running", "the report running")
        stopping_at = time.monotonic()
        server.send_signal(signal.SIGTERM)
        # uvicorn exits by the signal it caught, once the app's lifespan has ended
        assert server.wait(DEADLINE) == -signal.SIGTERM
        assert time.monotonic() - stopping_at < SHUTDOWN_TIMEOUT + 10  # not the report's 10 minutes
    with Client("sqlite", storage_options={"path": str(ws.db)}) as client:
        report = client.get(report_id)
    assert (report.status, report.error, report.retry_attempts) == ("ready", None, 0)  # not a failed attempt


# ----------------------------------------------------------------------------- Flask, a worker process


@pytest.fixture(scope="module")
def flask_with_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Client]]:
    """The Flask app (a standalone ``Client``, no task definitions) and a ``durable worker`` of
    the tasks, on one SQLite file; and a client of that file for the test."""
    ws, port = make_workspace(tmp_path_factory.mktemp("flask")), free_port()
    flask = ["flask", "--app", "examples.integration.flask_app", "run", "--host", "127.0.0.1", "--port", str(port)]
    with (started("worker", ["durable_core.cli", "worker", "examples.integration.tasks:executor"], ws),
          started("flask", flask, ws) as server, serving(server, port) as http,
          Client("sqlite", storage_options={"path": str(ws.db)}) as client):
        yield http, client


def test_flask_app_enqueues_by_task_id_for_a_worker_process(flask_with_worker):
    http, client = flask_with_worker
    image = {"image": "beach.jpg", "width": 3000, "height": 4000}
    execution_id = accepted(http.post("/thumbnails", json=image, headers={"Idempotency-Key": "upload-1"}))
    assert accepted(http.post("/thumbnails", json=image, headers={"Idempotency-Key": "upload-1"})) == execution_id

    assert client.wait(execution_id, timeout=DEADLINE).status == "completed"
    assert status_of(http, execution_id) == {
        "id": execution_id, "task_id": "resize_image", "status": "completed",
        "output": {"image": "beach.jpg", "width": 192, "height": 256}, "error": None,
    }
    unknown = http.get("/executions/te_doesnotexist")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "no execution te_doesnotexist"})
