"""The suite against an installed storage plugin, by name, with no code.

``python -m durable_conformance NAME [--option key=value]... [--known-failure ID[=REASON]]...
[--write FILE] [-- pytest args]`` (``durable conformance NAME ...`` once the CLI has it) writes a
test module that subclasses ``StorageConformance`` with a factory opening ``NAME`` through
``durable_core.open_storage``, and runs pytest on it. ``--write`` saves that module instead, as
the starting point of the pytest route.
"""

from __future__ import annotations

import inspect
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import trio

from durable_core import open_storage
from durable_core.storage.contract import Storage

from .opening import StorageFactory

TMP_PATH = "{tmp_path}"
"""In an option value, replaced by the check's own temporary directory."""


def _takes(name: str, option: str) -> bool:
    from durable_core.plugins.manager import default_registry

    try:
        return option in inspect.signature(default_registry().storage_factory(name)).parameters
    except (TypeError, ValueError):
        return False


def resolve_options(name: str, options: Mapping[str, Any] | None, tmp_path: Path | None) -> dict[str, Any]:
    """``options`` with ``{tmp_path}`` filled in; a storage whose factory takes ``path`` and was given
    none gets a fresh file in ``tmp_path``, so that no check ever touches a real database; one whose
    factory takes ``schema`` (a database server's) and was given none gets a new schema name."""
    resolved = {
        key: value.replace(TMP_PATH, str(tmp_path)) if isinstance(value, str) and tmp_path is not None else value
        for key, value in (options or {}).items()
    }
    if tmp_path is not None and "path" not in resolved and _takes(name, "path"):
        resolved["path"] = str(tmp_path / "durable.db")
    if tmp_path is not None and "schema" not in resolved and _takes(name, "schema"):
        resolved["schema"] = f"conformance_{uuid.uuid4().hex[:16]}"
    return resolved


@runtime_checkable
class Destroyable(Protocol):
    """Optional for a storage: ``destroy()`` drops what the storage made in its database (its
    tables, a schema). The by-name route calls it on each storage it opened under a name of its
    own making (a new ``schema``) after the check, or the run, ends (also when interrupted): on a
    closed storage, possibly in another trio run, so it may use only what outlives both, such as
    the storage's connection settings."""

    async def destroy(self) -> None: ...


_made: dict[str, Storage] = {}
"""The last storage opened under each schema name this process made up, until destroyed."""


def storage_by_name(name: str, options: Mapping[str, Any] | None = None, tmp_path: Path | None = None) -> StorageFactory:
    """A storage factory for the installed storage ``name``, opened by ``durable_core.open_storage``.
    A schema it names itself is recorded when it is first opened, for ``destroy_made``."""
    return _by_name(name, options, tmp_path)[0]


def _by_name(name: str, options: Mapping[str, Any] | None, tmp_path: Path | None) -> tuple[StorageFactory, str | None]:
    """``storage_by_name``'s factory, and the schema name it made up (None if it made none)."""
    resolved = resolve_options(name, options, tmp_path)
    made = resolved.get("schema") if "schema" not in (options or {}) else None

    @asynccontextmanager
    async def factory() -> AsyncIterator[Storage]:
        async with open_storage(name, **resolved) as storage:
            if made is not None:
                _made[made] = storage
            yield storage

    return factory, made


@contextmanager
def throwaway_storage(name: str, options: Mapping[str, Any] | None, tmp_path: Path) -> Iterator[StorageFactory]:
    """``storage_by_name`` for one check; afterwards, the schema it made (if any) is destroyed."""
    factory, made = _by_name(name, options, tmp_path)
    try:
        yield factory
    finally:
        destroy_made([made] if made else [])


def destroy_made(schemas: Iterable[str] | None = None) -> None:
    """Destroy the storages made under ``schemas`` (by default all of them) that were opened, if
    the storage is ``Destroyable``; each is forgotten even if that fails."""
    for schema in list(_made if schemas is None else schemas):
        storage = _made.pop(schema, None)
        if isinstance(storage, Destroyable):
            trio.run(storage.destroy)


async def _probe(factory: StorageFactory) -> None:
    """Open and close the storage once, so that a wrong option is one clear line, not 100 errors."""
    made = factory()
    assert isinstance(made, AbstractAsyncContextManager)  # storage_by_name's
    async with made:
        pass


def module_source(name: str, options: Mapping[str, Any], known_failures: Mapping[str, str]) -> str:
    """A test module running the whole suite against the installed storage ``name``."""
    class_name = "TestStorage" + "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name))
    failures = "".join(f"        {k!r}: {v!r},\n" for k, v in known_failures.items())
    return f'''"""The durable conformance suite against the installed storage {name!r}.

Written by `python -m durable_conformance {name} --write`; edit freely (docs/conformance.md).
"""

import pytest

from durable_conformance import StorageConformance, throwaway_storage

pytest_plugins = ["durable_conformance.plugin"]


class {class_name}(StorageConformance):
    known_failures = {{
{failures}    }}

    @pytest.fixture
    def storage_factory(self, tmp_path):
        with throwaway_storage({name!r}, {dict(options)!r}, tmp_path) as factory:
            yield factory
'''


def run(name: str, options: Mapping[str, Any] | None = None, pytest_args: Sequence[str] = (),
        known_failures: Mapping[str, str] | None = None) -> int:
    """Run the suite against the installed storage ``name``; pytest's exit code. A storage that
    is not installed, or options it refuses, raise ``DurableExecutionError`` before any check."""
    import pytest

    from durable_core.plugins.manager import default_registry

    with tempfile.TemporaryDirectory(prefix="durable-conformance-") as directory:
        root = Path(directory)
        default_registry().storage_factory(name)
        (root / "probe").mkdir()
        try:
            trio.run(_probe, storage_by_name(name, options, root / "probe"))
        finally:
            destroy_made()
        module = root / f"test_conformance_{re.sub(r'[^A-Za-z0-9]+', '_', name)}.py"
        module.write_text(module_source(name, options or {}, known_failures or {}), encoding="utf-8")
        ini = root / "pytest.ini"
        ini.write_text("[pytest]\naddopts = -p no:cacheprovider\n", encoding="utf-8")
        args = [str(module), "-c", str(ini), "--rootdir", str(root), *pytest_args]
        try:  # pytest tears the checks down also on Ctrl-C; what a check left is destroyed here
            return int(pytest.main(args, plugins=[_HypothesisHome(root / ".hypothesis")]))
        finally:
            destroy_made()


class _HypothesisHome:
    """Keeps Hypothesis's directory out of the working directory (a plugin: Hypothesis is imported
    by pytest first, so that pytest can rewrite its asserts)."""

    def __init__(self, directory: Path):
        self.directory = directory

    def pytest_configure(self) -> None:
        from hypothesis.configuration import set_hypothesis_home_dir

        set_hypothesis_home_dir(self.directory)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m durable_conformance ARGS``: ``durable conformance ARGS``, exiting with its code."""
    from durable_core.cli import run_command

    from .commands import conformance

    run_command(conformance, argv, "python -m durable_conformance")
