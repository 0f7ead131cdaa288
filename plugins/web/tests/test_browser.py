"""The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright.

One browser for the module; the server and a `durable worker` process are real. Set
``DURABLE_WEB_SCREENSHOTS=DIR`` to save the pages' screenshots there (docs/images holds them).
Without /usr/bin/chromium the tests skip, and fail when ``CI=true``: CI installs it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Server, running_server

CHROMIUM = Path(os.environ.get("DURABLE_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = os.environ.get("DURABLE_WEB_SCREENSHOTS")
TIMEOUT = 20_000  # ms: a worker process starts within it


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        how = f"no Chromium at {CHROMIUM}: install it with apt-get install -y chromium (or set DURABLE_TEST_CHROMIUM)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{how}; CI must run the browser tests, never skip them", pytrace=False)
        pytest.skip(how)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def quiet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose worker the first test starts, so it can watch an execution wait first."""
    with running_server(tmp_path_factory.mktemp("browser")) as server:
        yield server


@pytest.fixture
def page(browser: Any, quiet_server: Server) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 820}, base_url=quiet_server.url)
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def enqueue(server: Server, task_id: str, input: Any) -> str:
    response = httpx.post(f"{server.url}/api/v1/tasks/{task_id}/executions", json={"input": input})
    assert response.status_code == 201, response.text
    return str(response.json()["execution_id"])


def screenshot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def row_status(page: Any, execution_id: str) -> Any:
    return page.locator(f'tr[data-execution-id="{execution_id}"] .status')


def test_the_list_shows_an_execution_go_from_ready_to_completed_live(page: Any, quiet_server: Server) -> None:
    from playwright.sync_api import expect

    execution_id = enqueue(quiet_server, "greet", "Ada")
    page.goto("/")
    expect(row_status(page, execution_id)).to_have_text("ready")
    expect(page.locator("#live")).to_have_text("live")
    quiet_server.start_worker()  # no reload from here on: the page hears of it by itself
    expect(row_status(page, execution_id)).to_have_text("completed")
    expect(page.locator('[data-count="completed"]')).to_contain_text("1")


def test_an_execution_page_shows_input_output_and_tree(page: Any, quiet_server: Server) -> None:
    from playwright.sync_api import expect

    parent_id = enqueue(quiet_server, "fan_out", ["Ada", "Grace", "Edsger"])
    for name in ("Barbara", "Donald"):
        enqueue(quiet_server, "greet", name)
    enqueue(quiet_server, "fail", "a broken promise")
    page.goto("/")
    expect(row_status(page, parent_id)).to_have_text("completed")
    screenshot(page, "executions")
    page.locator(f'tr[data-execution-id="{parent_id}"] a').click()
    expect(page).to_have_url(re.compile(f"#/executions/{parent_id}$"))
    expect(page.locator("#status")).to_have_text("completed")
    expect(page.locator("#input")).to_contain_text("Grace")
    expect(page.locator("#output")).to_contain_text('"output": 3')
    expect(page.locator("#tree li li")).to_have_count(3)
    expect(page.locator("#tree li li .status")).to_have_text(["completed"] * 3)
    expect(page.locator("#cancel")).to_be_disabled()
    screenshot(page, "execution")


def test_a_failed_execution_shows_its_error_and_traceback(page: Any, quiet_server: Server) -> None:
    from playwright.sync_api import expect

    page.goto("/#/?status=failed")
    expect(page.locator("#filter-status")).to_have_value("failed")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    rows.locator("a").click()
    expect(page.locator("#error")).to_contain_text("builtins.ValueError: no good: a broken promise")
    expect(page.locator("#traceback")).to_contain_text("Traceback (most recent call last)")


def test_cancel_from_the_execution_page(page: Any, quiet_server: Server) -> None:
    from playwright.sync_api import expect

    execution_id = enqueue(quiet_server, "slow", 3600)
    page.goto(f"/#/executions/{execution_id}")
    expect(page.locator("#status")).to_have_text("running")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#cancel").click()
    expect(page.locator("#status")).to_have_text("cancelled")
    expect(page.locator("#error")).to_contain_text("Task execution cancelled")
    screenshot(page, "execution-cancelled")
    stored = httpx.get(f"{quiet_server.url}/api/v1/executions/{execution_id}").json()
    assert stored["status"] == "cancelled"


def test_the_workers_page_lists_the_worker(page: Any, quiet_server: Server) -> None:
    from playwright.sync_api import expect

    page.goto("/#/workers")
    expect(page.locator("tr[data-worker-id]")).to_have_count(1)
    expect(page.locator("tr[data-worker-id] td").nth(2)).to_have_text(str(quiet_server.workers[0].pid))
    screenshot(page, "workers")
