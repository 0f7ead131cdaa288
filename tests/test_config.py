"""The configuration: discovery, checking (errors name file, key path and expected value), the
executor it builds, and edits that keep every byte but the changed value."""

from __future__ import annotations

import ast
import inspect
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import durable_core.config
from durable_core import DurableExecutor
from durable_core.cli import cli
from durable_core.cli.config_file import default_config_text, set_config_value, unset_config_value
from durable_core.config import (
    CONFIG_ENV,
    EXECUTOR_OPTIONS,
    ConfigError,
    ConfigLocation,
    DurableConfig,
    load_config,
)
from durable_core.options import EXECUTOR_OPTIONS as EXECUTOR_DECLARATIONS

ODD = """\
# my settings   (hand written)
serializer =    'json'   # keep me

[storage]     # the store
  name="sqlite"    # which one
[storage.options]
path   =  "app.db"   # relative!


[executor]
# poll_interval = 0.5
shutdown_timeout=3 # seconds
"""


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CONFIG_ENV, "")  # recorded, so that `durable --config` in a test cannot leak
    monkeypatch.delenv(CONFIG_ENV)
    return tmp_path


def test_without_a_file_the_defaults_are_sqlite_in_durable_db_and_json() -> None:
    config = load_config()
    assert config == DurableConfig()
    assert (config.storage.name, dict(config.storage.options), config.serializer) == ("sqlite", {"path": "durable.db"}, "json")
    assert config.location is None


def test_discovery_order(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (workdir / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.durable.storage]\nname = "memory"\n')
    assert load_config().storage.name == "memory"
    assert load_config().location == ConfigLocation(Path("pyproject.toml"), ("tool", "durable"))
    (workdir / "durable.toml").write_text('serializer = "cbor"\n')
    assert load_config().serializer == "cbor"  # ./durable.toml wins over pyproject.toml
    (workdir / "other.toml").write_text('[storage]\nname = "other"\n')
    monkeypatch.setenv(CONFIG_ENV, "other.toml")
    assert load_config().storage.name == "other"  # DURABLE_CONFIG wins over ./durable.toml
    assert load_config("durable.toml").serializer == "cbor"  # an explicit path wins over all


def test_a_pyproject_without_a_durable_table_is_not_a_config(workdir: Path) -> None:
    (workdir / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert load_config().location is None


def test_storage_options_default_only_for_the_default_storage(workdir: Path) -> None:
    (workdir / "durable.toml").write_text('[storage]\nname = "memory"\n')
    assert load_config().storage.options == {}


@pytest.mark.parametrize(("text", "message"), [
    ("serializer = 5", ("durable.toml: serializer: expected the name of an installed serializer plugin "
                        "(a string; see: durable plugins), got an integer 5")),
    ('storage = "sqlite"', 'durable.toml: storage: expected a table, e.g. [storage] name = "sqlite", got a string "sqlite"'),
    ("[storage]\nname = true", "durable.toml: storage.name: expected the name of an installed storage plugin"),
    ("[storage]\noptions = [1]", "durable.toml: storage.options: expected a table of the storage plugin's options, got an array [1]"),
    ("[storage]\nnmae = 'x'", "durable.toml: unknown key 'storage.nmae'; did you mean 'name'? expected one of: name, options"),
    ("[executor]\npoll_intervl = 1", "durable.toml: unknown key 'executor.poll_intervl'; did you mean 'poll_interval'?"),
    ("[executor]\npoll_interval = 'fast'", "durable.toml: executor.poll_interval: expected a number > 0 (default 0.5), got a string \"fast\""),
    ("[executor]\nmax_lease_expirations = 1.5", "durable.toml: executor.max_lease_expirations: expected an integer >= 0 (default 10), got a float 1.5"),
    ("[executor]\nshutdown_timeout = -1", "durable.toml: executor.shutdown_timeout: expected a number >= 0 (default 15.0), got an integer -1"),
    ("[executor]\nshutdown_timeout = true", "durable.toml: executor.shutdown_timeout: expected a number >= 0"),
    ("[executor]\npoll_interval = 0", "durable.toml: executor.poll_interval: expected a number > 0 (default 0.5), got an integer 0"),
    ("storage_name = 'x'", "durable.toml: unknown key 'storage_name'; did you mean 'storage'?"),
    ("[storage\nname = 'x'", "durable.toml: not valid TOML: "),
    ("[retention]\nfinished_after = '7x'", ('durable.toml: retention.finished_after: expected a duration from 1m to '
                                           '36500d such as "7d", "12h" or "2w" (or a number of seconds), got a string "7x"')),
    ("[retention]\nfinished_after = -86400", "durable.toml: retention.finished_after: expected a duration from 1m"),
    ("[retention]\nfinished_after = '101000d'", "durable.toml: retention.finished_after: expected a duration from 1m"),
    ("[retention]\nfinished_afer = '7d'", "durable.toml: unknown key 'retention.finished_afer'; did you mean 'finished_after'?"),
    ("retention = '7d'", 'durable.toml: retention: expected a table, e.g. [retention] finished_after = "7d", got a string'),
])
def test_errors_name_the_key_path_and_the_expected_value(workdir: Path, text: str, message: str) -> None:
    (workdir / "durable.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_errors_in_pyproject_name_the_full_key_path(workdir: Path) -> None:
    (workdir / "pyproject.toml").write_text("[tool.durable.executor]\npoll_interval = 'x'\n")
    with pytest.raises(ConfigError, match=r"^pyproject.toml: tool.durable.executor.poll_interval: expected a number"):
        load_config()


def test_a_tool_durable_that_is_not_a_table_is_an_error(workdir: Path) -> None:
    (workdir / "pyproject.toml").write_text('[tool]\ndurable = "sqlite"\n')
    with pytest.raises(ConfigError, match=r'^pyproject.toml: tool.durable: expected a table, got a string "sqlite"$'):
        load_config()


def test_a_missing_explicit_file_says_how_to_create_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, "nope.toml")
    with pytest.raises(ConfigError, match=r"nope.toml \(named by --config or DURABLE_CONFIG\) does not exist; "
                                          r"create it with: durable --config nope.toml config init"):
        load_config()


def test_executor_options_are_the_numeric_arguments_of_the_executor() -> None:
    assert EXECUTOR_OPTIONS["poll_interval"] == (float, 0.5)
    assert EXECUTOR_OPTIONS["max_concurrent_task_executions"] == (int, 1000)
    assert "storage" not in EXECUTOR_OPTIONS and "plugins" not in EXECUTOR_OPTIONS


def test_the_executor_takes_every_declared_option_in_order_with_its_default() -> None:
    parameters = inspect.signature(DurableExecutor.__init__).parameters
    signature = {name: p.default for name, p in parameters.items() if name in EXECUTOR_DECLARATIONS}
    assert list(signature.items()) == [(o.name, o.default) for o in EXECUTOR_DECLARATIONS.values()]
    executor = DurableExecutor("memory", **{name: index + 1 for index, name in enumerate(signature)})
    assert [getattr(executor, name) for name in signature] == list(range(1, len(signature) + 1))


def test_executor_from_config_uses_storage_serializer_and_options(workdir: Path) -> None:
    (workdir / "durable.toml").write_text(
        '[storage]\nname = "memory"\n[executor]\npoll_interval = 2\nshutdown_timeout = 0.5\n'
    )
    executor = DurableExecutor.from_config()
    assert isinstance(executor, DurableExecutor)
    assert (executor.poll_interval, executor.shutdown_timeout) == (2, 0.5)
    assert DurableExecutor.from_config(poll_interval=3).poll_interval == 3  # overrides win


def test_overriding_the_storage_drops_the_configured_options() -> None:
    kwargs = DurableConfig().executor_kwargs(storage="memory")
    assert kwargs["storage"] == "memory" and "storage_options" not in kwargs
    assert DurableConfig().executor_kwargs()["storage_options"] == {"path": "durable.db"}


async def test_executor_from_config_runs_a_task_on_the_configured_storage(workdir: Path) -> None:
    (workdir / "durable.toml").write_text('[storage]\nname = "memory"\n')
    executor = DurableExecutor.from_config()

    @executor.task(id="double", timeout=5)
    async def double(ctx, input):
        return input * 2

    async with executor:
        handle = await executor.enqueue_task(double, 21)
        assert (await handle.wait_and_get_finished_execution()).output == 42
    assert not (workdir / "durable.db").exists()


def test_executor_range_errors_name_the_file(workdir: Path) -> None:
    (workdir / "durable.toml").write_text('[storage]\nname = "memory"\n')  # a bad value in the file is refused on reading
    with pytest.raises(ConfigError, match=r"^durable.toml: Invalid executor option poll_interval: expected a number > 0"):
        DurableExecutor.from_config(poll_interval=0)


def test_the_default_file_is_commented_and_means_the_defaults() -> None:
    text = default_config_text()
    assert text.count("#") > 10
    location = ConfigLocation(Path("durable.toml"))
    Path("durable.toml").write_text(text)
    assert load_config() == DurableConfig(location=location)
    assert all(f"# {name} = " in text for name in EXECUTOR_OPTIONS)


def test_set_keeps_every_byte_but_the_changed_value() -> None:
    Path("durable.toml").write_text(ODD)
    location = ConfigLocation(Path("durable.toml"))
    config, note = set_config_value(location, "executor.shutdown_timeout", 7.5)
    assert note is None
    assert config.executor["shutdown_timeout"] == 7.5
    assert Path("durable.toml").read_text() == ODD.replace("shutdown_timeout=3 #", "shutdown_timeout=7.5 #")
    set_config_value(location, "storage.options.path", "other.db")
    assert Path("durable.toml").read_text() == ODD.replace("shutdown_timeout=3 #", "shutdown_timeout=7.5 #").replace(
        '"app.db"', '"other.db"')


def test_set_adds_a_missing_key_and_leaves_the_rest_alone() -> None:
    Path("durable.toml").write_text(ODD)
    set_config_value(ConfigLocation(Path("durable.toml")), "executor.max_lease_expirations", 3)
    text = Path("durable.toml").read_text()
    assert text.startswith(ODD.rstrip("\n")) and text.endswith("max_lease_expirations = 3\n")


def test_set_uncomments_a_commented_out_key_in_place() -> None:
    Path("durable.toml").write_text(ODD.replace("# poll_interval", "  #poll_interval"))
    set_config_value(ConfigLocation(Path("durable.toml")), "executor.poll_interval", 1)
    assert Path("durable.toml").read_text() == ODD.replace("# poll_interval = 0.5", "  poll_interval = 1")
    set_config_value(ConfigLocation(Path("durable.toml")), "executor.poll_interval", 2)  # now it is there
    assert Path("durable.toml").read_text() == ODD.replace("# poll_interval = 0.5", "  poll_interval = 2")


def test_set_uncomments_only_in_the_key_s_own_table() -> None:
    Path("durable.toml").write_text(ODD.replace("[storage]     # the store", "# poll_interval = 9\n[storage]"))
    set_config_value(ConfigLocation(Path("durable.toml")), "executor.poll_interval", 1)
    text = Path("durable.toml").read_text()
    assert "# poll_interval = 9\n" in text and "\npoll_interval = 1\n" in text and "# poll_interval = 0.5" not in text


def test_unset_removes_a_key_and_nothing_else() -> None:
    Path("durable.toml").write_text(ODD)
    unset_config_value(ConfigLocation(Path("durable.toml")), "storage.options.path")
    assert Path("durable.toml").read_text() == ODD.replace('path   =  "app.db"   # relative!\n', "")
    with pytest.raises(ConfigError, match=r"^durable.toml sets no 'storage.options.path'; see what it sets with: "):
        unset_config_value(ConfigLocation(Path("durable.toml")), "storage.options.path")


def test_an_invalid_value_is_refused_and_the_file_left_alone() -> None:
    Path("durable.toml").write_text(ODD)
    with pytest.raises(ConfigError, match="durable.toml: executor.poll_interval: expected a number"):
        set_config_value(ConfigLocation(Path("durable.toml")), "executor.poll_interval", "fast")
    with pytest.raises(ConfigError, match="unknown key 'executor.pol'"):
        set_config_value(ConfigLocation(Path("durable.toml")), "executor.pol", 1)
    with pytest.raises(ConfigError, match="cannot set serializer.name: serializer is not a table"):
        set_config_value(ConfigLocation(Path("durable.toml")), "serializer.name", "x")
    assert Path("durable.toml").read_text() == ODD


def test_set_in_a_malformed_file_says_so() -> None:
    Path("durable.toml").write_text("[storage\n")
    with pytest.raises(ConfigError, match="^durable.toml: not valid TOML: "):
        set_config_value(ConfigLocation(Path("durable.toml")), "serializer", "json")


def test_set_without_a_file_writes_the_commented_defaults_first() -> None:
    set_config_value(ConfigLocation(Path("durable.toml")), "executor.poll_interval", 0.25)
    assert Path("durable.toml").read_text() == default_config_text().replace(
        "# poll_interval = 0.5", "poll_interval = 0.25")
    assert load_config().storage.options == {"path": "durable.db"}  # as written in the file


def test_set_in_pyproject_edits_tool_durable_only(workdir: Path) -> None:
    original = '[project]\nname = "app"  # mine\n\n[tool.durable]\nserializer = "json"\n'
    (workdir / "pyproject.toml").write_text(original)
    location = load_config().location
    assert location is not None
    set_config_value(location, "serializer", "cbor")
    assert (workdir / "pyproject.toml").read_text() == original.replace('"json"', '"cbor"')


def test_selecting_another_storage_resets_the_options_and_keeps_the_comments() -> None:
    Path("durable.toml").write_text(ODD)
    location = ConfigLocation(Path("durable.toml"))
    config, note = set_config_value(location, "storage.name", "memory")
    assert note == "removed storage.options.path, options of 'sqlite'"
    assert config.storage == type(config.storage)("memory", {}) == load_config().storage
    assert Path("durable.toml").read_text() == ODD.replace('name="sqlite"', 'name="memory"').replace(
        'path   =  "app.db"   # relative!\n', "")
    assert set_config_value(location, "serializer", "cbor")[1] is None
    assert set_config_value(location, "storage.name", "memory")[1] is None  # the same storage: nothing to reset
    _, note = set_config_value(location, "storage.name", "sqlite")
    assert note == "'sqlite' takes: path, synchronous, busy_timeout, busy_retries, max_batch_size, watch_interval, " \
                   "file_mode (set one with: durable config set storage.options.NAME VALUE)"


def test_every_command_names_an_option_the_storage_does_not_take_and_how_to_remove_it(workdir: Path) -> None:
    (workdir / "durable.toml").write_text('[storage]\nname = "memory"\n[storage.options]\npath = "durable.db"\n')
    message = ("durable.toml: storage.options.path is not an option of storage 'memory' (it takes none); "
               "remove it with: durable config unset storage.options.path")
    with pytest.raises(ConfigError) as caught:
        DurableExecutor.from_config()
    assert str(caught.value) == message
    (workdir / "durable.toml").write_text('[storage.options]\nbusy_timeuot = 1\n')
    with pytest.raises(ConfigError, match=r"^durable.toml: storage.options.busy_timeuot is not an option of storage "
                                          r"'sqlite' \(did you mean 'busy_timeout'\? it takes: path, "):
        DurableExecutor.from_config()
    DurableExecutor.from_config(storage="memory")  # another storage: the file's options do not apply


def test_config_commands(workdir: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["config", "init"]).output == "wrote durable.toml\n"
    again = runner.invoke(cli, ["config", "init"])
    assert again.exit_code != 0 and "already exists; overwrite it with: durable config init --force" in str(again.exception)
    assert runner.invoke(cli, ["config", "set", "storage.name", "memory"]).output == (
        'durable.toml: storage.name = "memory" (removed storage.options.path, options of \'sqlite\')\n')
    assert runner.invoke(cli, ["config", "set", "executor.poll_interval", "0.25"]).exit_code == 0
    assert runner.invoke(cli, ["config", "get", "storage.name"]).output == "memory\n"
    assert runner.invoke(cli, ["config", "get", "executor.poll_interval"]).output == "0.25\n"
    assert runner.invoke(cli, ["config", "get", "executor.shutdown_timeout"]).output == "15.0\n"  # a default
    shown = runner.invoke(cli, ["config", "show"]).output
    assert shown.startswith("# from durable.toml\n")
    assert tomllib.loads(shown)["executor"]["poll_interval"] == 0.25


def test_retention_is_set_by_config_set_and_given_to_the_executor(workdir: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["config", "set", "retention.finished_after", "7d"]).output == (
        'durable.toml: retention.finished_after = "7d"\n')
    assert '\nfinished_after = "7d"\n' in Path("durable.toml").read_text()  # uncommented in place
    assert Path("durable.toml").read_text().count("finished_after =") == 1
    assert runner.invoke(cli, ["config", "get", "retention.finished_after"]).output == "7d\n"
    assert DurableExecutor.from_config(storage="memory").retention_finished_after == 7 * 86400
    wrong = runner.invoke(cli, ["config", "set", "retention.finished_after", "30s"])
    assert wrong.exit_code != 0
    assert str(wrong.exception).startswith("durable.toml: retention.finished_after: expected a duration from 1m to ")
    assert load_config().retention == {"finished_after": "7d"}  # the file was left alone


def test_config_init_in_pyproject_appends_tool_durable(workdir: Path) -> None:
    (workdir / "pyproject.toml").write_text('[project]\nname = "app"\n')
    result = CliRunner().invoke(cli, ["--config", "pyproject.toml", "config", "init"])
    assert result.exit_code == 0, result.output
    text = (workdir / "pyproject.toml").read_text()
    assert text.startswith('[project]\nname = "app"\n\n') and "[tool.durable.storage]" in text
    assert load_config("pyproject.toml") == DurableConfig(location=ConfigLocation(Path("pyproject.toml"), ("tool", "durable")))


def test_set_checks_storage_options_against_the_storage_plugin_declarations() -> None:
    runner = CliRunner()
    wrong = runner.invoke(cli, ["config", "set", "storage.options.path", "5"])
    assert wrong.exit_code != 0
    assert str(wrong.exception) == (
        "durable.toml: storage.options.path: expected a file path (default 'durable.db'), got an integer 5")
    unknown = runner.invoke(cli, ["config", "set", "storage.options.busy_timeuot", "2"])
    assert str(unknown.exception).startswith(
        "durable.toml: storage.options.busy_timeuot is not an option of storage 'sqlite' (did you mean "
        "'busy_timeout'? it takes: path, ")
    assert not Path("durable.toml").exists()
    assert runner.invoke(cli, ["config", "set", "storage.options.busy_timeout", "2"]).exit_code == 0
    assert load_config().storage.options == {"path": "durable.db", "busy_timeout": 2}


def test_the_core_only_reads_the_configuration() -> None:
    """Editing (tomlkit) belongs to the command line, and the executor imports the configuration,
    never the other way round."""
    tree = ast.parse(Path(durable_core.config.__file__).read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    imported = {getattr(node, "module", None) for node in imports} | {alias.name for node in imports for alias in node.names}
    assert "tomlkit" not in imported and "executor" not in imported


def test_every_executor_option_is_documented_with_its_default() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "config.md").read_text()
    for option in EXECUTOR_DECLARATIONS.values():
        assert f"| `{option.name}` | `{option.default!r}` | {option.expected().split(' (default')[0]} |" in docs
