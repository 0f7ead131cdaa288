"""The token gate, and `durable serve` as users start it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server, running_server

from durable_web.server import is_loopback

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("guarded"), token=TOKEN) as server:
        yield server


@pytest.mark.parametrize("headers,message", [
    ({}, "missing token"), ({"Authorization": "Bearer nope"}, "wrong token"),
    ({"Authorization": f"Basic {TOKEN}"}, "wrong token"),
])
def test_the_api_refuses_a_missing_or_wrong_token(guarded: Server, headers: dict[str, str], message: str) -> None:
    for method, path in [("GET", "/api/v1/executions"), ("POST", "/api/v1/tasks/greet/executions"),
                         ("GET", "/api/v1/openapi.json"), ("GET", "/api/v1/events")]:
        response = httpx.request(method, guarded.url + path, headers=headers, json={"input": 1})
        assert response.status_code == 401 and message in response.json()["error"], (path, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
    with guarded.client() as client:
        assert client.get("/api/v1/executions").json() == {"executions": [], "next_cursor": None}  # nothing stored


def test_the_right_bearer_token_passes_and_health_needs_none(guarded: Server) -> None:
    with guarded.client() as client:
        assert client.post("/api/v1/tasks/greet/executions", json={"input": 1}).status_code == 201
    assert httpx.get(guarded.url + "/healthz").json() == {"status": "ok"}


def test_the_dashboard_asks_for_the_token_then_keeps_it_in_a_cookie(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.url) as browser:
        page = browser.get("/")
        assert page.status_code == 401 and "<form" in page.text and "durable serve --token" in page.text
        assert browser.get("/static/app.js").status_code == 401
        wrong = browser.get("/", params={"token": "nope"})
        assert wrong.status_code == 401 and "Wrong token" in wrong.text
        opened = browser.get("/", params={"token": TOKEN})
        assert opened.status_code == 303 and opened.headers["location"] == "/"
        cookie = opened.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert browser.get("/").status_code == 200  # the cookie, sent back
        assert browser.get("/api/v1/executions").status_code == 200


def test_only_loopback_addresses_count_as_local() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.4", "example.com"]))


def durable(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "durable_core.cli", *args], cwd=cwd, env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_serve_refuses_to_bind_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    out, err = durable("serve", "--host", "0.0.0.0", cwd=tmp_path).communicate(timeout=60)
    assert err.strip() == ("error: binding to 0.0.0.0 makes the API reachable from other machines; give a token: "
                           "durable serve --token TOKEN (or set DURABLE_WEB_TOKEN), or bind to 127.0.0.1")
    assert not (tmp_path / "durable.db").exists()


def test_serve_runs_until_sigint_and_says_where(tmp_path: Path) -> None:
    server = durable("serve", "--port", "0", cwd=tmp_path)
    assert server.stderr is not None
    line = server.stderr.readline()
    while "serving the dashboard at" not in line:
        assert line, "durable serve ended before serving"
        line = server.stderr.readline()
    url = re.search(r"at (http://\S+)/ and", line)
    assert url is not None
    assert httpx.get(url[1] + "/healthz").json() == {"status": "ok"}
    assert httpx.get(url[1] + "/").text.startswith("<!doctype html>")
    server.send_signal(signal.SIGINT)
    _, err = server.communicate(timeout=30)
    assert server.returncode == 0 and err.rstrip().endswith("stopped"), err
