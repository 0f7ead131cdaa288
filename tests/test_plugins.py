"""Plugin loading (built-ins, real entry points, broken and disabled plugins) and the registry."""

import importlib
import inspect
import logging
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import click
import click.testing
import pytest

import durable_core
from durable_core.errors import DurableExecutionError, DurableExecutionNotFoundError
from durable_core.events import TaskExecutionEvent
from durable_core.plugins import hookimpl
from durable_core.plugins.manager import (
    DISABLE_ENV,
    DurablePluginManager,
    PluginRegistry,
    default_registry,
    get_plugin_manager,
    reset_default_registry,
)
from durable_core.serialization import JsonSerializer
from durable_core.status import TaskExecutionStatus
from durable_core.storage.contract import StorageError

ROOT = Path(__file__).parents[1]

STORAGE_PLUGIN = """
from durable_core import hookimpl

@hookimpl
def durable_register_storages(register):
    register({name!r}, lambda **options: ("opened", {name!r}, options))
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty site directory as the only place distributions are found; returns ``install``."""
    stdlib = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib")}
    monkeypatch.setattr(sys, "path", [str(tmp_path), *(p for p in sys.path if p in stdlib or "lib-dynload" in p)])
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    before = set(sys.modules)

    def install(distribution: str, version: str, plugins: dict[str, str | None]) -> None:
        """Write an installed distribution whose ``durable`` entry points are modules with these
        sources (None: a module that does not exist)."""
        package = distribution.replace("-", "_")
        info = tmp_path / f"{package}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
        entry_points = ["[durable]"]
        for name, source in plugins.items():
            if source is not None:
                (tmp_path / f"{package}_{name}.py").write_text(textwrap.dedent(source))
            entry_points.append(f"{name} = {package}_{name}")
        (info / "entry_points.txt").write_text("\n".join(entry_points) + "\n")
        importlib.invalidate_caches()

    yield install
    for name in set(sys.modules) - before:
        del sys.modules[name]


def info(registry: PluginRegistry, name: str):
    return next(plugin for plugin in registry.plugins if plugin.name == name)


def event(kind: str = "claimed") -> TaskExecutionEvent:
    return TaskExecutionEvent(
        kind, "te_1", "task", TaskExecutionStatus.READY, TaskExecutionStatus.RUNNING, 12.5, "de_1"
    )


def test_builtins_load_and_are_described(site) -> None:
    registry = PluginRegistry.load()
    assert [(p.name, p.distribution, p.origin, p.status, p.provides) for p in registry.plugins] == [
        ("json", None, "durable-core", "ok", ["serializer:json"]),
        ("logging", None, "durable-core", "ok", ["hook:durable_task_execution_event"]),
        ("validation", None, "durable-core", "ok", ["hook:durable_input_validator"]),
    ]
    assert registry.serializer_names() == ["json"]
    assert registry.storage_names() == []


def test_serializer_is_created_once(site) -> None:
    registry = PluginRegistry.load()
    serializer = registry.serializer("json")
    assert isinstance(serializer, JsonSerializer)
    assert registry.serializer("json") is serializer


def test_entry_point_plugins_load_with_their_distribution(site) -> None:
    site("durable-storage-fake", "1.2.3", {"fake": STORAGE_PLUGIN.format(name="fake")})
    registry = PluginRegistry.load()
    fake = info(registry, "fake")
    assert (fake.distribution, fake.version) == ("durable-storage-fake", "1.2.3")
    assert fake.origin == "durable-storage-fake 1.2.3"
    assert (fake.status, fake.provides) == ("ok", ["storage:fake"])
    assert registry.storage_names() == ["fake"]
    assert registry.storage_factory("fake")(path="x.db") == ("opened", "fake", {"path": "x.db"})


def test_a_plugin_that_fails_to_import_is_recorded_and_the_rest_load(site) -> None:
    site("broken-plugin", "0.1", {"broken": "raise RuntimeError('no database driver')"})
    site("missing-plugin", "0.2", {"missing": None})
    site("good-plugin", "1.0", {"good": STORAGE_PLUGIN.format(name="good")})
    registry = PluginRegistry.load()
    broken, missing = info(registry, "broken"), info(registry, "missing")
    assert (broken.status, broken.error) == ("error", "RuntimeError: no database driver")
    assert (broken.distribution, broken.version) == ("broken-plugin", "0.1")
    assert missing.status == "error" and missing.error.startswith("ModuleNotFoundError:")
    assert registry.storage_names() == ["good"]
    with pytest.raises(DurableExecutionNotFoundError) as caught:
        registry.storage_factory("broken")
    assert caught.value.message == (
        "storage 'broken' is not available: plugin 'broken' failed: RuntimeError: no database driver"
    )


def test_a_registration_hook_that_raises_drops_the_whole_plugin(site) -> None:
    site("half-plugin", "0.3", {"half": """
        from durable_core import hookimpl

        @hookimpl
        def durable_register_serializers(register):
            register("half", object)

        @hookimpl
        def durable_register_storages(register):
            register("half", dict)
            raise KeyError("config")

        @hookimpl
        def durable_task_execution_event(event):
            raise AssertionError("an errored plugin must not observe")
    """})
    registry = PluginRegistry.load()
    half = info(registry, "half")
    assert (half.status, half.error) == ("error", "durable_register_storages raised KeyError: 'config'")
    assert registry.storage_names() == [] and registry.serializer_names() == ["json"]
    registry.emit(event())


def test_duplicate_storage_names_are_refused_naming_both_distributions(site, monkeypatch) -> None:
    site("durable-storage-fast", "2.0", {"fast": STORAGE_PLUGIN.format(name="memory")})
    site("durable-storage-memory", "0.1.0", {"memory": STORAGE_PLUGIN.format(name="memory")})
    with pytest.raises(DurableExecutionError) as caught:
        PluginRegistry.load()
    message = caught.value.message
    assert message.startswith("storage 'memory' is registered by two plugins: ")
    assert "'fast' (durable-storage-fast 2.0)" in message and "'memory' (durable-storage-memory 0.1.0)" in message
    assert "uninstall one of them, or disable one with DURABLE_DISABLE_PLUGINS=" in message

    monkeypatch.setenv(DISABLE_ENV, "fast")
    registry = PluginRegistry.load()
    assert registry.storage_names() == ["memory"]
    fast = info(registry, "fast")
    assert (fast.status, fast.distribution, fast.provides) == ("disabled", "durable-storage-fast", [])


def test_disabled_plugins_are_never_imported(site, monkeypatch) -> None:
    site("broken-plugin", "0.1", {"broken": "raise RuntimeError('imported anyway')"})
    monkeypatch.setenv(DISABLE_ENV, " broken , json")
    registry = PluginRegistry.load()
    assert info(registry, "broken").status == "disabled"
    assert info(registry, "json").status == "disabled"
    with pytest.raises(DurableExecutionNotFoundError) as caught:
        registry.serializer("json")
    assert caught.value.message == "serializer 'json' is disabled by DURABLE_DISABLE_PLUGINS"


def test_missing_plugins_say_how_to_install_them(site) -> None:
    registry = PluginRegistry.load()
    with pytest.raises(DurableExecutionNotFoundError) as storage:
        registry.storage_factory("sqlite")
    with pytest.raises(DurableExecutionNotFoundError) as serializer:
        registry.serializer("cbor")
    assert storage.value.message == "storage 'sqlite' is not installed; run: durable install sqlite"
    assert serializer.value.message == "serializer 'cbor' is not installed; run: durable install cbor"


def test_a_misspelt_hook_is_reported(site) -> None:
    site("typo-plugin", "1.0", {"typo": """
        from durable_core import hookimpl

        @hookimpl
        def durable_register_storage(register):
            pass
    """})
    typo = info(PluginRegistry.load(), "typo")
    assert typo.status == "error"
    assert typo.error == "ValueError: unknown hook durable_register_storage (misspelt? see docs/plugins.md)"


def test_two_distributions_with_one_plugin_name_keep_the_first(site) -> None:
    site("first-dist", "1.0", {"same": STORAGE_PLUGIN.format(name="one")})
    site("second-dist", "1.0", {"same": STORAGE_PLUGIN.format(name="two")})
    registry = PluginRegistry.load()
    assert len(registry.storage_names()) == 1
    error = next(p for p in registry.plugins if p.name == "same" and p.status == "error")
    assert "plugin name 'same' is already taken by" in error.error


def test_a_serializer_factory_must_make_a_serializer_of_that_name(site) -> None:
    pm = get_plugin_manager()

    class Misnamed:
        @hookimpl
        def durable_register_serializers(self, register):
            register("fancy", JsonSerializer)

    pm.register(Misnamed(), name="misnamed")
    with pytest.raises(DurableExecutionError, match="'fancy' was registered with a factory that makes serializer 'json'"):
        PluginRegistry.load(pm).serializer("fancy")


def test_emit_reaches_every_observer_and_isolates_failures(site, caplog) -> None:
    seen: list[tuple[str, Any]] = []

    class Failing:
        @hookimpl
        def durable_task_execution_event(self, event):
            raise RuntimeError("observer bug")

    class Recording:
        @hookimpl
        def durable_task_execution_event(self, event):
            seen.append(("recording", event))

    class Counting:
        @hookimpl
        def durable_task_execution_event(self):
            seen.append(("counting", None))

    pm = get_plugin_manager()
    for plugin in (Recording(), Failing(), Counting()):
        pm.register(plugin, name=type(plugin).__name__.lower())
    registry = PluginRegistry.load(pm)
    assert registry.observing()  # observers that do not say when they listen always do
    with caplog.at_level(logging.ERROR, logger="durable.plugins"):
        registry.emit(event())
    assert sorted(name for name, _ in seen) == ["counting", "recording"]
    assert seen[[name for name, _ in seen].index("recording")][1] == event()
    assert "plugin 'failing' failed to observe claimed event of te_1" in caplog.text
    assert "observer bug" in caplog.text


def test_builtin_logging_observer_logs_structured_debug_records(site, caplog) -> None:
    registry = PluginRegistry.load()
    with caplog.at_level(logging.INFO, logger="durable.events"):
        assert not registry.observing()  # so the engine builds no event at all
        registry.emit(event())
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger="durable.events"):
        assert registry.observing()
        registry.emit(event("committed"))
    [record] = caplog.records
    assert record.getMessage() == "committed task [te_1] ready -> running"
    assert (record.kind, record.execution_id, record.task_id, record.status, record.executor_id) == (
        "committed", "te_1", "task", TaskExecutionStatus.RUNNING, "de_1"
    )


def test_plugins_add_commands_to_the_command_line(site, caplog) -> None:
    class Commands:
        @hookimpl
        def durable_register_commands(self, cli):
            @cli.command()
            @click.argument("name")
            def hello(name):
                click.echo(f"hello {name}")

    class Broken:
        @hookimpl
        def durable_register_commands(self, cli):
            raise RuntimeError("no commands today")

    pm = get_plugin_manager()
    pm.register(Commands(), name="commands")
    pm.register(Broken(), name="broken")

    @click.group()
    def cli():
        pass

    with caplog.at_level(logging.WARNING, logger="durable.plugins"):
        PluginRegistry.load(pm).register_commands(cli)
    result = click.testing.CliRunner().invoke(cli, ["hello", "world"])
    assert (result.exit_code, result.output) == (0, "hello world\n")
    assert "plugin 'broken' failed to add commands: RuntimeError: no commands today" in caplog.text


def test_plugin_validators_take_precedence_over_the_builtin_one(site) -> None:
    class Schema:
        pass

    class Validation:
        @hookimpl
        def durable_input_validator(self, schema, task_id):
            if schema is Schema:
                return lambda value: (task_id, value)

    pm = get_plugin_manager()
    pm.register(Validation(), name="custom")
    registry = PluginRegistry.load(pm)
    assert registry.input_validator(Schema, "t")(1) == ("t", 1)
    assert registry.input_validator(object(), "t") is None


def test_default_registry_is_loaded_once_until_reset(site) -> None:
    reset_default_registry()
    try:
        first = default_registry()
        assert default_registry() is first
        reset_default_registry()
        assert default_registry() is not first
    finally:
        reset_default_registry()


def test_get_plugin_manager_returns_a_new_pluggy_manager_each_time(site) -> None:
    first, second = get_plugin_manager(), get_plugin_manager()
    assert isinstance(first, DurablePluginManager) and first is not second
    assert first.project_name == "durable"


def test_importing_durable_core_loads_no_plugin() -> None:
    code = (
        "import sys, durable_core, durable_core.plugins.manager as m; "
        "print(m._default is None, any(n.startswith('durable_core.plugins.builtin') for n in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout == "True False\n"


# ----------------------------------------------------------------------------- declared storage options

OPTION_PLUGIN = """
from pathlib import Path

from durable_core import Option, hookimpl

OPENED = []

@hookimpl
def durable_register_storages(register):
    register("declared", lambda **options: OPENED.append(options), options=[
        Option("path", Path, "x.db", "The file."),
        Option("size", int, 1, "How many.", minimum=1),
    ])
"""


def test_a_storage_declares_its_options_and_an_old_plugin_need_not(site) -> None:
    site("durable-storage-declared", "1.0", {"declared": OPTION_PLUGIN})
    site("durable-storage-fake", "1.0", {"fake": STORAGE_PLUGIN.format(name="fake")})
    registry = PluginRegistry.load()
    assert [option.name for option in registry.storage_options("declared")] == ["path", "size"]
    assert registry.storage_options("fake") is None  # register(name, factory): nothing declared, nothing checked
    assert info(registry, "declared").as_json()["options"] == {"storage:declared": [
        {"name": "path", "type": "Path", "default": "x.db", "help": "The file.", "expected": "a file path (default 'x.db')"},
        {"name": "size", "type": "int", "default": 1, "help": "How many.", "expected": "an integer >= 1 (default 1)"},
    ]}
    assert "options" not in info(registry, "fake").as_json()


@pytest.mark.parametrize(("options", "message"), [
    ({"colour": "blue"}, "Invalid options for storage 'declared': unknown option 'colour'; it takes: path, size"),
    ({"size": 0}, "Invalid declared storage option size=0: expected an integer >= 1 (default 1)"),
    ({"size": 1.5}, "Invalid declared storage option size=1.5: expected an integer >= 1 (default 1)"),
    ({"path": 5}, "Invalid declared storage option path=5: expected a file path (default 'x.db')"),
])
async def test_open_storage_checks_options_against_the_declarations_before_opening(site, options, message) -> None:
    site("durable-storage-declared", "1.0", {"declared": OPTION_PLUGIN})
    registry = PluginRegistry.load()
    with pytest.raises(StorageError) as caught:
        async with durable_core.open_storage("declared", plugins=registry, **options):
            pass
    assert caught.value.message == message and not caught.value.is_retryable
    assert sys.modules["durable_storage_declared_declared"].OPENED == []  # the factory never ran


OLD_API_PLUGIN = """
from durable_core import hookimpl

CLOSED = []

class OldStorage:
    storage_api = 2  # written before deferred_options: it would drop them

    async def aclose(self):
        CLOSED.append(self)

@hookimpl
def durable_register_storages(register):
    register("old", OldStorage)
"""


async def test_open_storage_refuses_a_storage_written_for_another_storage_api(site) -> None:
    site("durable-storage-old", "1.0", {"old": OLD_API_PLUGIN})
    with pytest.raises(StorageError) as caught:
        async with durable_core.open_storage("old", plugins=PluginRegistry.load()):
            pass
    assert caught.value.message == (f"storage 'old' implements storage API 2, but this durable-core needs "
                                    f"{durable_core.STORAGE_API}; upgrade the plugin or durable-core")
    assert not caught.value.is_retryable
    assert len(sys.modules["durable_storage_old_old"].CLOSED) == 1


README = {"memory": "plugins/storage_memory/README.md", "sqlite": "plugins/storage_sqlite/README.md",
          "postgres": "plugins/storage_postgres/README.md", "dictstore": "conformance/examples/storage_dictstore/README.md"}


def test_each_storage_of_the_repository_declares_exactly_its_factory_arguments(monkeypatch) -> None:
    """The declarations repeat the factories' defaults (for plugins that must not import their
    storage to list them); this keeps the two, and the README's options table, in step."""
    monkeypatch.syspath_prepend(str(ROOT / "conformance" / "examples" / "storage_dictstore"))
    import durable_storage_dictstore.plugin

    pm = get_plugin_manager()
    pm.register(durable_storage_dictstore.plugin, name="dictstore")
    registry = PluginRegistry.load(pm)
    assert {"memory", "sqlite", "dictstore"} <= set(registry.storage_names())
    for name in registry.storage_names():
        parameters = inspect.signature(registry.storage_factory(name)).parameters.values()
        from_signature = {p.name: None if p.default is p.empty else p.default for p in parameters}
        declared = registry.storage_options(name)
        assert declared is not None, f"storage {name!r} declares no options"
        assert {option.name: option.default for option in declared} == from_signature, name
        readme = (ROOT / README[name]).read_text()
        assert all(f"| `{option.name}` |" in readme for option in declared), f"{README[name]}: options table"


# ----------------------------------------------------------------------------- observing


def test_an_observer_that_says_when_it_listens_is_asked_before_every_event(site) -> None:
    listening = False
    seen: list[TaskExecutionEvent] = []

    class Sometimes:
        @hookimpl
        def durable_observing(self):
            return lambda: listening

        @hookimpl
        def durable_task_execution_event(self, event):
            seen.append(event)

    pm = get_plugin_manager()
    pm.register(Sometimes(), name="sometimes")
    registry = PluginRegistry.load(pm)
    assert info(registry, "sometimes").provides == ["hook:durable_task_execution_event"]
    assert not registry.observing()  # nor does the built-in logging one, below DEBUG
    listening = True
    assert registry.observing()
    registry.emit(event())
    assert seen == [event()]


def test_an_observer_whose_durable_observing_returns_none_always_listens(site) -> None:
    class Always:
        @hookimpl
        def durable_observing(self):
            return None

        @hookimpl
        def durable_task_execution_event(self, event):
            pass

    pm = get_plugin_manager()
    pm.register(Always(), name="always")
    assert PluginRegistry.load(pm).observing()


def test_a_durable_observing_that_raises_drops_the_whole_plugin(site) -> None:
    class Broken:
        @hookimpl
        def durable_observing(self):
            raise RuntimeError("no logger")

        @hookimpl
        def durable_task_execution_event(self, event):
            raise AssertionError("an errored plugin must not observe")

    pm = get_plugin_manager()
    pm.register(Broken(), name="broken")
    registry = PluginRegistry.load(pm)
    assert (info(registry, "broken").status, info(registry, "broken").error) == (
        "error", "durable_observing raised RuntimeError: no logger")
    assert not registry.observing()
    registry.emit(event())
