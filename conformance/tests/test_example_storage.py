"""A third-party storage outside the core packages, installed as its own distribution, passes the
suite by both routes.

``conformance/examples/storage_dictstore`` is built and installed (pip, no build isolation) into a
directory of its own, which fresh Python processes put first on their path: so its ``durable``
entry point is found from its installed metadata, exactly as for a user who pip-installed it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "storage_dictstore"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a process in which durable-storage-dictstore is installed."""
    target = tmp_path_factory.mktemp("site")
    # build with the hatchling at hand if there is one, else let pip fetch it
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *isolation,
         "--target", str(target), str(EXAMPLE)],
        capture_output=True, text=True, check=False,
    )
    if build.returncode != 0:
        pytest.fail(f"could not install the example storage:\n{build.stdout}\n{build.stderr}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_the_installed_distribution_registers_the_durable_entry_point(installed: dict[str, str]) -> None:
    probe = subprocess.run(
        [sys.executable, "-c",
         ("import importlib.metadata as m, durable_storage_dictstore as d\n"
         "from durable_core.plugins.manager import default_registry\n"
         "print(m.distribution('durable-storage-dictstore').version, d.__file__)\n"
         "print(default_registry().storage_names())")],
        env=installed, capture_output=True, text=True, check=True,
    )
    version_and_file, names = probe.stdout.splitlines()
    assert version_and_file.startswith("0.1.0 ") and str(EXAMPLE) not in version_and_file
    assert "dictstore" in names


def test_the_suite_passes_by_the_pytest_route_and_by_name(installed: dict[str, str], tmp_path: Path) -> None:
    """Both routes at once, in two processes."""
    pytest_cwd, name_cwd = tmp_path / "pytest_route", tmp_path / "by_name"
    pytest_cwd.mkdir()
    name_cwd.mkdir()
    by_pytest = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(EXAMPLE),
         "-c", os.devnull, f"{EXAMPLE / 'tests' / 'test_conformance.py'}::TestDictStore"],
        env=installed, cwd=pytest_cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    by_name = subprocess.Popen(
        [sys.executable, "-m", "durable_conformance", "dictstore", "--", "-q", "-rs"],
        env=installed, cwd=name_cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    pytest_output, _ = by_pytest.communicate(timeout=600)
    name_output, _ = by_name.communicate(timeout=600)
    assert by_pytest.returncode == 0, pytest_output
    assert by_name.returncode == 0, name_output
    for output in (pytest_output, name_output):
        assert " passed" in output and "failed" not in output and "error" not in output
    # by name, a storage whose factory takes `path` gets a fresh file per check: it is persistent
    assert "lacks capability 'persistent'" not in name_output
    assert "lacks capability 'multi_process'" in name_output
    assert list(name_cwd.iterdir()) == []  # by name, nothing is written where it runs
