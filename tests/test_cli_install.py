"""``durable install`` / ``uninstall``: name resolution, the installer command, and for real, in a
fresh environment: ``pip install durable`` runs the demo, and durable-core alone gets the sqlite
plugin by its short name."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement as PackagingRequirement

from durable_core.cli import install
from durable_core.cli.common import UserError
from durable_core.plugin_index import PLUGIN_DISTRIBUTIONS

ROOT = Path(__file__).resolve().parent.parent


def test_short_names_resolve_through_the_generated_table() -> None:
    assert install.resolve("sqlite") == install.Requirement("durable-storage-sqlite", "durable-storage-sqlite", "sqlite")
    assert PLUGIN_DISTRIBUTIONS["memory"] == "durable-storage-memory"


def test_distribution_names_and_requirements_pass_through() -> None:
    assert install.resolve("durable-storage-redis>=1.2") == install.Requirement("durable-storage-redis>=1.2", "durable-storage-redis")
    assert install.resolve("fancy==1.0").distribution == "fancy"


def test_an_unknown_short_name_is_a_user_error_with_a_suggestion() -> None:
    with pytest.raises(UserError, match=r"^unknown plugin 'memroy'; did you mean 'memory'\? short names: "):
        install.resolve("memroy")


def test_local_project_folders_and_wheels_resolve_to_their_distribution(tmp_path: Path) -> None:
    folder = install.resolve(str(ROOT / "plugins" / "storage_memory"))
    assert (folder.argument, folder.distribution) == (str(ROOT / "plugins" / "storage_memory"), "durable-storage-memory")
    wheel = tmp_path / "durable_storage_x-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("durable_storage_x-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: durable-storage-x\nVersion: 1.0\n")
    assert install.resolve(str(wheel)).distribution == "durable-storage-x"


def test_pip_runs_as_this_python_and_uv_stands_in_when_pip_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert install.pip("install", "x") == [sys.executable, "-m", "pip", "install", "x"]
    assert install.pip("uninstall", "x") == [sys.executable, "-m", "pip", "uninstall", "-y", "x"]
    monkeypatch.setattr(install.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(install.shutil, "which", lambda name: "/bin/uv" if name == "uv" else None)
    assert install.pip("uninstall", "x") == ["/bin/uv", "pip", "uninstall", "--python", sys.executable, "x"]
    monkeypatch.setattr(install.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="neither pip nor uv is available for this Python; add pip with: "):
        install.pip("install", "x")


def test_dry_run_prints_the_command_and_installs_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "durable_core.cli", "install", "sqlite", "cbor", "--find-links", "wheels", "-U", "--dry-run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "sqlite -> durable-storage-sqlite",
        "cbor -> durable-serializer-cbor",
        (f"would run: {sys.executable} -m pip install --upgrade --find-links {tmp_path / 'wheels'} "
         "durable-storage-sqlite durable-serializer-cbor"),
    ]


# ----------------------------------------------------------------------------- for real


def run(*command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=120,
                            env=env, check=False)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


def runtime_dependencies(name: str) -> set[str]:
    """``name``'s runtime dependencies, recursively, as installed here (extras left out)."""
    found: set[str] = set()
    pending = [name]
    while pending:
        for line in importlib.metadata.requires(pending.pop()) or []:
            requirement = PackagingRequirement(line)
            if (requirement.marker is None or requirement.marker.evaluate({"extra": ""})) and requirement.name not in found:
                found.add(requirement.name)
                pending.append(requirement.name)
    return found


def copy_distribution(name: str, site_packages: Path) -> None:
    """Install ``name`` into another environment by copying its installed files: the fresh
    environment gets trio and friends without reaching a package index."""
    distribution = importlib.metadata.distribution(name)
    for file in distribution.files or []:
        if file.parts[0] != ".." and "__pycache__" not in file.parts:
            target = site_packages / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(distribution.locate_file(file), target)


@pytest.mark.slow
def test_pip_install_durable_runs_the_demo_and_durable_core_alone_installs_sqlite_by_name(tmp_path: Path) -> None:
    """One fresh environment, as a user would meet it: ``pip install durable`` then ``durable demo``;
    without durable-storage-sqlite (durable-core alone), ``durable demo`` says in one line how to
    add it, and ``durable install sqlite`` does."""
    wheels = tmp_path / "wheels"
    for project in (ROOT, ROOT / "plugins" / "storage_sqlite", ROOT / "plugins" / "storage_memory",
                    ROOT / "packages" / "durable"):
        run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", project, "-w", wheels)
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    site_packages = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    for dependency in runtime_dependencies("durable-core"):
        copy_distribution(dependency, site_packages)
    env = {key: value for key, value in os.environ.items() if key not in ("DURABLE_CONFIG", "PYTHONPATH")}
    env |= {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    project = tmp_path / "project"
    project.mkdir()

    def durable(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([venv / "bin" / "durable", *args], cwd=project, capture_output=True, text=True,
                              timeout=120, env=env, check=False)

    run(python, "-m", "pip", "install", "-q", "--find-links", wheels, "durable", env=env)
    demo = durable("demo")
    assert demo.returncode == 0, demo.stderr
    assert demo.stdout.splitlines()[-1].startswith('completed: {"file": "report.pdf"')

    run(python, "-m", "pip", "uninstall", "-q", "-y", "durable", "durable-storage-sqlite", env=env)  # durable-core alone
    for args in (["demo"], ["executions", "list"]):
        missing = durable(*args)
        assert (missing.returncode, missing.stderr) == (2, "error: storage 'sqlite' is not installed; run: durable install sqlite\n")
    assert durable("plugins").stdout.startswith("no plugins installed")

    installed = durable("install", "sqlite", "--find-links", wheels, "--use")
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.splitlines() == [
        "installed durable-storage-sqlite 0.1.0: plugin 'sqlite' provides storage:sqlite",
        'durable.toml: storage.name = "sqlite"',
    ]
    assert 'name = "sqlite"' in (project / "durable.toml").read_text()
    row = durable("plugins").stdout.splitlines()[1].split()
    assert row == ["sqlite", "durable-storage-sqlite", "0.1.0", "storage:sqlite", "ok"]
    assert " upload_file " in durable("executions", "list").stdout  # the demo's workflow, in ./durable.db

    (wheel,) = wheels.glob("durable_storage_memory-*.whl")
    by_path = durable("install", wheel)  # a local wheel; its distribution is checked all the same
    assert by_path.stdout == "installed durable-storage-memory 0.1.0: plugin 'memory' provides storage:memory\n"

    removed = durable("uninstall", "sqlite")
    assert removed.returncode == 0, removed.stderr
    assert "warning: durable.toml still selects storage 'sqlite', which was just removed" in removed.stderr
    assert durable("executions", "list").returncode == 2
