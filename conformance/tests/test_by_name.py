"""The suite by name, with no code: ``python -m durable_conformance NAME [...] [-- pytest args]``."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from durable_conformance.by_name import module_source, resolve_options
from durable_core.storage.opening import parse_option


def conformance(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run([sys.executable, "-m", "durable_conformance", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def test_memory_by_name(tmp_path: Path) -> None:
    result = conformance("memory", "--", "-q", "-k", "claim or durab", "-rs", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout
    assert "storage lacks capability 'persistent'" in result.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(importlib.util.find_spec("durable_storage_sqlite") is None,
                    reason="durable-storage-sqlite is not installed")
def test_sqlite_by_name_gets_a_fresh_file_per_check(tmp_path: Path) -> None:
    result = conformance("sqlite", "--option", "busy_timeout=2.5", "--", "-q", "-k", "reopen", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout  # the durability checks ran: nothing was skipped
    assert list(tmp_path.iterdir()) == []  # and never on ./durable.db
    explicit = conformance("sqlite", "--option", "path={tmp_path}/mine.db", "--", "-q", "-k", "reopening_keeps",
                           cwd=tmp_path)
    assert explicit.returncode == 0, explicit.stdout + explicit.stderr


def test_mistakes_are_one_clear_line(tmp_path: Path) -> None:
    missing = conformance("nosuch", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == "error: storage 'nosuch' is not installed; run: durable install nosuch\n"
    wrong = conformance("memory", "--option", "colour=blue", cwd=tmp_path)
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("error: Invalid options for storage 'memory'") and wrong.stderr.count("\n") == 1
    malformed = conformance("memory", "--option", "colour", cwd=tmp_path)
    assert (malformed.returncode, malformed.stderr) == (2, (
        "error: Invalid value for '--option' / '-o': --option expects key=value, got 'colour' "
        "(see: python -m durable_conformance --help)\n"))


def test_write_saves_the_module_of_the_pytest_route(tmp_path: Path) -> None:
    target = tmp_path / "test_memory_conformance.py"
    result = conformance("memory", "--known-failure", "test_claim_limit_and_equal_ready_times=issue 3",
                         "--write", str(target), cwd=tmp_path)
    assert result.returncode == 0 and "wrote" in result.stdout
    source = target.read_text()
    ast.parse(source)
    assert "class TestStorageMemory(StorageConformance):" in source
    assert "'test_claim_limit_and_equal_ready_times': 'issue 3'" in source
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull,
                          "--rootdir", str(tmp_path), str(target), "-k", "claim_limit"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 1 and "XPASS(strict)" in run.stdout  # it passes: the declaration is stale


def test_options_are_json_or_text_and_name_the_checks_directory(tmp_path: Path) -> None:
    assert parse_option("busy_timeout=2.5") == ("busy_timeout", 2.5)
    assert parse_option("path=a.db") == ("path", "a.db")
    assert parse_option("flags={\"a\": true}") == ("flags", {"a": True})
    assert parse_option(" x = 1") == ("x", 1)
    resolved = resolve_options("memory", {"path": "{tmp_path}/x.db", "n": 1}, tmp_path)
    assert resolved == {"path": f"{tmp_path}/x.db", "n": 1}
    assert resolve_options("memory", {}, tmp_path) == {}  # the memory factory takes no path
    assert "with throwaway_storage('memory', {'n': 1}, tmp_path) as factory:" in module_source("memory", {"n": 1}, {})
