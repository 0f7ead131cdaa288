"""The JSON API over real HTTP: a Hypercorn server on a free port, a `durable worker` process."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import httpx
import pytest
from conftest import Server

from durable_web.api import MAX_PAGE


def wait_for(client: httpx.Client, execution_id: str, *statuses: str, timeout: float = 20.0) -> dict[str, Any]:
    """The execution once its status is one of ``statuses`` (it changes in the worker process)."""
    deadline = time.monotonic() + timeout
    while True:
        execution = client.get(f"/api/v1/executions/{execution_id}").json()
        if execution["status"] in statuses or time.monotonic() > deadline:
            assert execution["status"] in statuses, execution
            return execution
        time.sleep(0.05)


def stored_count(server: Server) -> int:
    with sqlite3.connect(server.db) as conn:
        return int(conn.execute("SELECT count(*) FROM executions").fetchone()[0])


def enqueue(client: httpx.Client, task_id: str, input: Any = None, **body: Any) -> str:
    response = client.post(f"/api/v1/tasks/{task_id}/executions", json={"input": input, **body})
    assert response.status_code == 201, response.text
    return str(response.json()["execution_id"])


def test_an_enqueued_execution_is_run_by_the_worker_and_shown_in_full(server: Server) -> None:
    with server.client() as client:
        execution_id = enqueue(client, "greet", "Ada")
        execution = wait_for(client, execution_id, "completed")
    assert execution["output"] == {"hello": "Ada"} and execution["input"] == "Ada"
    assert execution["task_id"] == "greet" and execution["attempts"] == 1 and execution["error"] is None
    assert execution["executor_id"].startswith("de_")
    assert execution["created_at"] <= execution["started_at"] <= execution["finished_at"]
    assert execution["created_at"].endswith("+00:00")


def test_an_error_is_shown_with_its_type_and_traceback(server: Server) -> None:
    with server.client() as client:
        execution = wait_for(client, enqueue(client, "fail", "tea"), "failed")
    error = execution["error"]
    assert error["message"] == "no good: tea" and error["type_name"] == "builtins.ValueError"
    assert "Traceback (most recent call last)" in error["traceback"] and "dashboard_tasks.py" in error["traceback"]
    assert execution["output"] is None


def test_the_same_idempotency_key_returns_the_first_execution_and_stores_nothing(server: Server) -> None:
    with server.client() as client:
        first = enqueue(client, "greet", "x", idempotency_key="order-17")
        count = stored_count(server)
        assert enqueue(client, "greet", "y", idempotency_key="order-17") == first
    assert stored_count(server) == count


def test_the_list_filters_and_pages_newest_first_without_gaps(server: Server) -> None:
    with server.client() as client:
        ids = [enqueue(client, "greet", f"page {i}") for i in range(7)]
        seen: list[str] = []
        cursor = None
        while True:
            params = {"task_id": "greet", "limit": 3, **({"cursor": cursor} if cursor else {})}
            page = client.get("/api/v1/executions", params=params).json()
            seen += [e["execution_id"] for e in page["executions"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen[:7] == ids[::-1] and len(seen) == len(set(seen))
        assert all(e["task_id"] == "greet" for e in client.get("/api/v1/executions?task_id=greet").json()["executions"])
        for execution_id in ids:
            wait_for(client, execution_id, "completed")
        listed = client.get("/api/v1/executions", params={"status": "completed,failed", "limit": MAX_PAGE}).json()
        assert {e["status"] for e in listed["executions"]} <= {"completed", "failed"}
        assert set(ids) <= {e["execution_id"] for e in listed["executions"]}
        assert client.get("/api/v1/executions?status=ready&task_id=nobody").json() == {"executions": [],
                                                                                       "next_cursor": None}


def test_the_tree_shows_a_parent_with_its_children(server: Server) -> None:
    with server.client() as client:
        parent = wait_for(client, enqueue(client, "fan_out", ["a", "b", "c"]), "completed")
        assert [c["task_id"] for c in parent["children"]] == ["greet"] * 3
        finished = parent["output"]["children"]  # the children's outcomes, as JSON objects
        assert [(c["status"], c["output"]) for c in finished] == [("completed", {"hello": n}) for n in "abc"]
        child_id = parent["children"][1]["execution_id"]
        child = client.get(f"/api/v1/executions/{child_id}").json()
        assert child["parent"]["execution_id"] == parent["execution_id"] and child["parent"]["index_in_parent_children"] == 1
        tree = client.get(f"/api/v1/executions/{child_id}/tree").json()  # from any node: the whole tree
    assert tree["truncated"] is False and tree["tree"]["execution_id"] == parent["execution_id"]
    assert [(n["task_id"], n["status"]) for n in tree["tree"]["children"]] == [("greet", "completed")] * 3


def test_cancel_stops_a_running_execution(server: Server) -> None:
    with server.client() as client:
        execution_id = enqueue(client, "slow", 3600)
        wait_for(client, execution_id, "running")
        response = client.post(f"/api/v1/executions/{execution_id}/cancel")
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
        execution = client.get(f"/api/v1/executions/{execution_id}").json()
        assert execution["status"] == "cancelled" and execution["error"]["error_type"] == "cancelled"
        again = client.post(f"/api/v1/executions/{execution_id}/cancel")  # finished: left as it is
        assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_the_wakeup_webhook_finishes_a_sleeping_execution(server: Server) -> None:
    with server.client() as client:
        completed = enqueue(client, "approval", "order-1")
        failed = enqueue(client, "approval", "order-2")
        both = client.post("/api/v1/tasks/approval/wakeup/order-1", json={"output": 1, "error": "x"})
        assert both.status_code == 400 and "not both" in both.json()["error"]
        empty = client.post("/api/v1/tasks/approval/wakeup/order-1", json={"error": " "})
        assert empty.status_code == 400 and "non-empty" in empty.json()["error"]
        woken = client.post("/api/v1/tasks/approval/wakeup/order-1", json={"output": {"approved": True}})
        assert woken.status_code == 200 and woken.json() == {"execution_id": completed, "task_id": "approval",
                                                             "status": "completed"}
        assert client.get(f"/api/v1/executions/{completed}").json()["output"] == {"approved": True}
        rejected = client.post("/api/v1/tasks/approval/wakeup/order-2", json={"error": "rejected by Bob"})
        assert rejected.json()["status"] == "failed"
        assert client.get(f"/api/v1/executions/{failed}").json()["error"]["message"] == "rejected by Bob"
        unknown = client.post("/api/v1/tasks/approval/wakeup/order-404", json={})
        assert unknown.status_code == 404 and "order-404" in unknown.json()["error"]


def test_workers_lists_the_live_worker(server: Server) -> None:
    with server.client() as client:
        workers = client.get("/api/v1/workers").json()["workers"]
    assert [w["pid"] for w in workers] == [server.workers[0].pid]
    assert workers[0]["executor_id"].startswith("de_") and workers[0]["heartbeat_at"]


def test_health_stats_and_the_openapi_document(server: Server) -> None:
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        wait_for(client, enqueue(client, "greet", "stats"), "completed")
        deadline = time.monotonic() + 10
        # samples are taken every stats_interval: wait for one that counts a completed execution
        while "completed" not in ((stats := client.get("/api/v1/stats").json())["counts"] or {}) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stats["counts"]["completed"] >= 1 and stats["history"][-1]["counts"] == stats["counts"]
        spec = client.get("/api/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/api/v1/executions/{execution_id}" in spec["paths"]


def test_the_openapi_document_describes_every_route(server: Server) -> None:
    from starlette.routing import Route

    from durable_web import Service, create_app

    with server.client() as client:
        spec = client.get("/api/v1/openapi.json").json()
    app: Any = create_app(Service.__new__(Service))
    routes = {(route.path, method.lower()) for route in app.routes if isinstance(route, Route) and route.path != "/"
              for method in (route.methods or ()) - {"HEAD"}}
    documented = {(path, method) for path, operations in spec["paths"].items() for method in operations}
    assert routes == documented


def test_live_events_send_the_first_page_again_when_it_changes(server: Server) -> None:
    with server.client() as client, client.stream("GET", "/api/v1/events", params={"task_id": "greet", "limit": 5}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        pages = _events(lines, "executions")
        next(pages)
        execution_id = enqueue(client, "greet", "live")
        statuses = []
        for page in pages:
            mine = [e["status"] for e in page["executions"] if e["execution_id"] == execution_id]
            statuses += mine[:1]
            if statuses and statuses[-1] == "completed":
                break
    assert statuses[-1] == "completed"


def _events(lines: Any, name: str) -> Any:
    current = None
    for line in lines:
        if line.startswith("event: "):
            current = line[7:]
        elif line.startswith("data: ") and current == name:
            yield json.loads(line[6:])


def test_live_events_of_one_execution(server: Server) -> None:
    with server.client() as client:
        execution_id = enqueue(client, "slow", 3600)
        with client.stream("GET", "/api/v1/events", params={"execution_id": execution_id}) as stream:
            updates = _events(stream.iter_lines(), "execution")
            assert next(updates)["execution_id"] == execution_id
            wait_for(client, execution_id, "running")
            client.post(f"/api/v1/executions/{execution_id}/cancel")
            assert any(update["status"] == "cancelled" for update in updates)
        assert client.get("/api/v1/events", params={"execution_id": "te_unknown"}).status_code == 404


# ----------------------------------------------------------------------------- bad input


BAD_REQUESTS = [
    ("POST", "/api/v1/tasks/nope/executions", {"json": {"input": 1}}, 404, "unknown task 'nope'"),
    ("POST", "/api/v1/tasks/bad-id/executions", {"json": {}}, 404, "alphanumeric"),
    ("POST", "/api/v1/tasks/greet/executions", {"content": b'{"input": '}, 400, "malformed JSON"),
    ("POST", "/api/v1/tasks/greet/executions", {"content": b'{"input": NaN}'}, 400, "NaN is not JSON"),
    ("POST", "/api/v1/tasks/greet/executions", {"content": b"\xff\xfe"}, 400, "malformed JSON"),
    ("POST", "/api/v1/tasks/greet/executions", {"json": [1]}, 400, "must be a JSON object"),
    ("POST", "/api/v1/tasks/greet/executions", {"json": {"inptu": 1}}, 400, "unknown field 'inptu'"),
    ("POST", "/api/v1/tasks/greet/executions", {"json": {"idempotency_key": "k" * 300}}, 400, "idempotency_key"),
    ("POST", "/api/v1/tasks/greet/executions", {"json": {"input": json.loads("[" * 300 + "]" * 300)}}, 400,
     "nested too deeply"),
    ("POST", "/api/v1/tasks/greet/executions", {"content": b'{"input": "' + b"x" * (2 << 20) + b'"}'}, 413,
     "over the limit"),
    ("POST", "/api/v1/tasks/approval/wakeup/u", {"content": b"{"}, 400, "malformed JSON"),
    ("GET", "/api/v1/executions/te_unknown", {}, 404, "te_unknown"),
    ("GET", "/api/v1/executions/te_unknown/tree", {}, 404, "te_unknown"),
    ("POST", "/api/v1/executions/te_unknown/cancel", {}, 404, "te_unknown"),
    ("GET", "/api/v1/executions?status=done", {}, 400, "Unknown status"),
    ("GET", "/api/v1/executions?limit=0", {}, 400, "limit must be"),
    ("GET", "/api/v1/executions?limit=ten", {}, 400, "limit must be"),
    ("GET", "/api/v1/executions?cursor=garbage", {}, 400, "cursor"),
    ("GET", "/api/v1/executions?sort=asc", {}, 400, "unknown query parameter 'sort'"),
    ("GET", "/api/v1/executions?limit=1&limit=2", {}, 400, "more than once"),
    ("GET", "/api/v1/nothing", {}, 404, "no such endpoint"),
    ("DELETE", "/api/v1/executions", {}, 405, "not allowed"),
]


@pytest.mark.parametrize("method,path,kwargs,status,message", BAD_REQUESTS,
                         ids=[f"{s}-{m}" for _, _, _, s, m in BAD_REQUESTS])
def test_bad_input_is_one_json_error_and_stores_nothing(server: Server, method: str, path: str, kwargs: Any,
                                                        status: int, message: str) -> None:
    before = stored_count(server)
    with server.client() as client:
        response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert message in body["error"] and body["status"] == status
    assert "Traceback" not in response.text
    assert stored_count(server) == before


def test_metrics_are_served_when_the_prometheus_plugin_is_installed(server: Server) -> None:
    pytest.importorskip("durable_prometheus", reason="durable-prometheus serves /metrics")
    from prometheus_client.parser import text_string_to_metric_families

    with server.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert {"durable_executions", "durable_ready_executions", "durable_storage_operation_seconds"} <= families.keys()
    statuses = {sample.labels["status"] for sample in families["durable_executions"].samples}
    assert {"ready", "running", "completed"} <= statuses  # sampled from the storage every few seconds
