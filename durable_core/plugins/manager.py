"""Loading plugins and calling their hooks.

``get_plugin_manager()`` builds a pluggy manager: built-ins first, then every entry point of the
``durable`` group, each in its own ``try`` so that a broken plugin is recorded, never fatal.
``PluginRegistry`` is the typed facade the engine and the CLI use: one method per hook, with the
storages and serializers collected once, duplicates refused, and observers isolated from each other.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from ..errors import DurableExecutionError, DurableExecutionNotFoundError
from . import hookspecs
from .hookspecs import RunningExecutor, StorageFactory

if TYPE_CHECKING:
    import click

    from ..events import ExecutionRun, TaskExecutionEvent
    from ..options import Option
    from ..serialization import Serializer

PROJECT = "durable"
"""The pluggy project name and the entry-point group."""

DISABLE_ENV = "DURABLE_DISABLE_PLUGINS"
"""Comma-separated plugin names (entry-point or built-in names) that are never loaded."""

BUILTIN_PLUGINS: tuple[str, ...] = (
    "durable_core.plugins.builtin_json",
    "durable_core.plugins.builtin_logging",
    "durable_core.plugins.builtin_validation",
)
"""Modules of the built-in plugins, named after what follows ``builtin_``: json, logging, validation."""

logger = logging.getLogger("durable.plugins")


@dataclass
class PluginInfo:
    """One plugin as ``durable plugins`` shows it."""

    name: str
    distribution: str | None
    """The installed distribution it came from; None for a plugin built into durable-core."""
    version: str | None
    provides: list[str] = field(default_factory=list)
    """e.g. ``storage:memory``, ``serializer:json``, ``hook:durable_task_execution_event``."""
    status: Literal["ok", "error", "disabled"] = "ok"
    error: str | None = None
    options: dict[str, tuple[Option, ...]] = field(default_factory=dict)
    """The options each thing it provides declares, by its ``provides`` entry (``storage:sqlite``)."""

    @property
    def origin(self) -> str:
        """Where it came from, for messages: ``durable-storage-sqlite 0.1.0`` or ``durable-core``."""
        if self.distribution is None:
            return "durable-core"
        return f"{self.distribution} {self.version}" if self.version else self.distribution

    def as_json(self) -> dict[str, Any]:
        """What ``durable plugins --json`` prints for this plugin: its fields, and ``options``
        (each declared option as ``Option.describe()`` gives it, by ``provides`` entry) only when
        something it provides takes options."""
        fields = {attribute.name: getattr(self, attribute.name) for attribute in dataclasses.fields(self)
                  if attribute.name != "options"}
        declared = {entry: [option.describe() for option in options] for entry, options in self.options.items() if options}
        return fields | ({"options": declared} if declared else {})


def disabled_plugin_names() -> list[str]:
    """The plugin names listed in ``DURABLE_DISABLE_PLUGINS``."""
    return [name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class DurablePluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers each plugin's distribution and the plugins that failed."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.add_hookspecs(hookspecs)
        self.distributions: dict[str, tuple[str, str]] = {}
        """Plugin name → (distribution, version), for plugins loaded from entry points."""
        self.failures: list[PluginInfo] = []
        """Plugins that could not be loaded, with the reason."""

    def load_plugin(
        self, name: str, load: Callable[[], object], distribution: tuple[str, str] | None = None
    ) -> None:
        """Import (``load()``) and register one plugin unless it is blocked; never raises."""
        if self.is_blocked(name):
            if distribution:
                self.distributions[name] = distribution
            return
        try:
            if self.get_plugin(name) is not None:
                raise ValueError(
                    f"plugin name {name!r} is already taken by {self.plugin_info(name).origin}; "
                    "uninstall one of them"
                )
            plugin = load()
            self.register(plugin, name=name)
            unknown = [caller.name for caller in self.get_hookcallers(plugin) or () if not caller.has_spec()]
            if unknown:
                self.unregister(plugin)
                raise ValueError(f"unknown hook {', '.join(unknown)} (misspelt? see docs/plugins.md)")
        except Exception as exc:
            distribution_name, version = distribution or (None, None)
            info = PluginInfo(name, distribution_name, version, status="error", error=_describe(exc))
            logger.warning("plugin %r (%s) failed to load: %s", name, info.origin, info.error)
            self.failures.append(info)
        else:
            if distribution:
                self.distributions[name] = distribution

    def plugin_info(self, name: str, **fields: Any) -> PluginInfo:
        """A ``PluginInfo`` for the plugin ``name``, with its distribution filled in."""
        return PluginInfo(name, *self.distributions.get(name, (None, None)), **fields)


def get_plugin_manager() -> DurablePluginManager:
    """A new manager with the built-in plugins and every installed ``durable`` entry point, minus
    those named in ``DURABLE_DISABLE_PLUGINS``."""
    pm = DurablePluginManager()
    for name in disabled_plugin_names():
        pm.set_blocked(name)
    for module in BUILTIN_PLUGINS:
        pm.load_plugin(module.rpartition(".builtin_")[2], functools.partial(importlib.import_module, module))
    for entry_point in importlib.metadata.entry_points(group=PROJECT):
        dist = entry_point.dist
        pm.load_plugin(entry_point.name, entry_point.load, (dist.name, dist.version) if dist else None)
    return pm


def _each_plugin(pm: pluggy.PluginManager, hook_name: str) -> list[tuple[str, pluggy.HookCaller]]:
    """The plugins implementing ``hook_name``, in load order, each with a hook caller that calls
    only it: through pluggy (which gives each implementation the arguments it takes), yet one
    plugin that raises is dealt with alone and the others are still called."""
    hook: pluggy.HookCaller = getattr(pm.hook, hook_name)
    implementers = {impl.plugin_name: impl.plugin for impl in hook.get_hookimpls()
                    if not (impl.wrapper or impl.hookwrapper)}
    return [
        (name, pm.subset_hook_caller(hook_name, [other for other in implementers.values() if other is not plugin]))
        for name, plugin in implementers.items()
    ]


def _each_function(pm: pluggy.PluginManager, hook_name: str,
                   argument: str | None) -> list[tuple[str, Callable[..., Any]]]:
    """For the hooks called at every state change, run or enqueue: each plugin's implementation
    itself, taking the hook's one ``argument`` whether or not it declares it (as pluggy would pass
    it), or none. Pluggy's call costs several times a quick observer's work, on the engine's thread."""
    hook: pluggy.HookCaller = getattr(pm.hook, hook_name)
    return [(impl.plugin_name,
             impl.function if argument is None else _taking_one(impl.function, argument in impl.argnames))
            for impl in hook.get_hookimpls() if not (impl.wrapper or impl.hookwrapper)]


def _taking_one(function: Callable[..., Any], takes_it: bool) -> Callable[[Any], Any]:
    return function if takes_it else (lambda _: function())


@dataclass(frozen=True)
class Registration:
    """What a plugin registered under a name: the factory and, if declared, its options."""

    factory: Callable[..., Any]
    options: tuple[Option, ...] | None
    plugin: PluginInfo


_OWN_ENTRIES = ("durable_register_storages", "durable_register_serializers", "durable_observing")
"""Hooks not listed as ``hook:NAME`` in ``PluginInfo.provides``: what the register hooks give is
listed as ``storage:NAME`` and ``serializer:NAME``, and ``durable_observing`` only qualifies
``durable_task_execution_event``."""


class PluginRegistry:
    """The loaded plugins, with one typed method per hook."""

    def __init__(self, pm: DurablePluginManager):
        self._pm = pm
        self.plugins: list[PluginInfo] = [
            pm.plugin_info(name, status="ok" if plugin is not None else "disabled")
            for name, plugin in pm.list_name_plugin()
        ]
        infos = {info.name: info for info in self.plugins}
        storages = self._offers("durable_register_storages", infos)
        serializers = self._offers("durable_register_serializers", infos)
        listening = {name: answers[0] for name, call in _each_plugin(pm, "durable_observing")
                     if (answers := self._guarded(infos[name], call))}
        for info in self.plugins:
            if info.status == "error":  # a plugin that failed to register takes no part at all
                pm.unregister(name=info.name)
        self._storages = self._table("storage", storages)
        self._serializer_factories = self._table("serializer", serializers)
        self._serializers: dict[str, Serializer] = {}
        for info in self.plugins:
            plugin = pm.get_plugin(info.name)
            if plugin is not None:
                info.provides += [f"hook:{caller.name}" for caller in pm.get_hookcallers(plugin) or ()
                                  if caller.name not in _OWN_ENTRIES]
        self._observers = [(name, observe, listening.get(name))
                           for name, observe in _each_function(pm, "durable_task_execution_event", "event")]
        self._always_observed = any(listening is None for _, _, listening in self._observers)
        self._context_givers = _each_function(pm, "durable_execution_context", None)
        self._run_wrappers = _each_function(pm, "durable_wrap_run", "run")
        self.wraps_runs = bool(self._run_wrappers)
        """Whether a plugin wraps runs (``durable_wrap_run``): if none does, runs cost nothing more."""
        self.plugins += pm.failures

    @classmethod
    def load(cls, pm: DurablePluginManager | None = None) -> PluginRegistry:
        """Collect what the plugins of ``pm`` (default: a new ``get_plugin_manager()``) register.

        A plugin whose registration hook (or ``durable_observing``) raises is marked ``error`` and
        left out; two plugins registering the same name raise ``DurableExecutionError``.
        """
        return cls(pm if pm is not None else get_plugin_manager())

    @staticmethod
    def _guarded(info: PluginInfo, call: pluggy.HookCaller, **kwargs: Any) -> list[Any]:
        """What the plugin's implementation returns; if it raises, the plugin is marked ``error``."""
        try:
            answers: list[Any] = call(**kwargs)
        except Exception as exc:
            info.status, info.error = "error", f"{call.name} raised {_describe(exc)}"
            logger.warning("plugin %r (%s) failed: %s", info.name, info.origin, info.error)
            return []
        return answers

    def _offers(self, hook_name: str, infos: dict[str, PluginInfo]) -> list[tuple[str, Registration]]:
        """What each plugin offers through a ``register`` hook, called for each plugin alone."""
        offered: list[tuple[str, Registration]] = []
        for plugin_name, call in _each_plugin(self._pm, hook_name):
            info = infos[plugin_name]
            found: list[tuple[str, Registration]] = []

            def register(name: str, factory: Callable[..., Any], options: Iterable[Option] | None = None) -> None:
                found.append((name, Registration(factory, None if options is None else tuple(options), info)))

            self._guarded(info, call, register=register)
            offered += found
        return offered

    @staticmethod
    def _table(kind: str, offered: list[tuple[str, Registration]]) -> dict[str, Registration]:
        table: dict[str, Registration] = {}
        for name, registration in offered:
            info = registration.plugin
            if info.status == "error":
                continue
            if name in table:
                first = table[name].plugin
                raise DurableExecutionError(
                    f"{kind} {name!r} is registered by two plugins: {first.name!r} ({first.origin}) "
                    f"and {info.name!r} ({info.origin}); uninstall one of them, or disable one with "
                    f"{DISABLE_ENV}={info.name}",
                    is_retryable=False,
                )
            table[name] = registration
            info.provides.append(f"{kind}:{name}")
            if registration.options is not None:
                info.options[f"{kind}:{name}"] = registration.options
        return table

    def _not_installed(self, kind: str, name: str) -> DurableExecutionNotFoundError:
        """Why ``name`` is missing: its plugin is disabled or broken, or it is not installed."""
        info = next((info for info in self.plugins if info.name == name and info.status != "ok"), None)
        if info is not None and info.status == "disabled":
            return DurableExecutionNotFoundError(f"{kind} {name!r} is disabled by {DISABLE_ENV}")
        if info is not None:
            return DurableExecutionNotFoundError(
                f"{kind} {name!r} is not available: plugin {name!r} failed: {info.error}"
            )
        return DurableExecutionNotFoundError(f"{kind} {name!r} is not installed; run: durable install {name}")

    def storage_names(self) -> list[str]:
        return sorted(self._storages)

    def _storage(self, name: str) -> Registration:
        try:
            return self._storages[name]
        except KeyError:
            raise self._not_installed("storage", name) from None

    def storage_factory(self, name: str) -> StorageFactory:
        """The factory of the installed storage ``name`` (``durable_register_storages``)."""
        return self._storage(name).factory

    def storage_options(self, name: str) -> tuple[Option, ...] | None:
        """The options the installed storage ``name`` declares; None if its plugin declares none."""
        return self._storage(name).options

    def serializer_names(self) -> list[str]:
        return sorted(self._serializer_factories)

    def serializer(self, name: str) -> Serializer:
        """The installed serializer ``name`` (``durable_register_serializers``), created once."""
        serializer = self._serializers.get(name)
        if serializer is None:
            try:
                factory = self._serializer_factories[name].factory
            except KeyError:
                raise self._not_installed("serializer", name) from None
            serializer = factory()
            if serializer.name != name:
                raise DurableExecutionError(
                    f"serializer {name!r} was registered with a factory that makes serializer "
                    f"{serializer.name!r}; the names must match",
                    is_retryable=False,
                )
            self._serializers[name] = serializer
        return serializer

    def input_validator(self, schema: Any, task_id: str) -> Callable[[Any], Any] | None:
        """The validation function for ``input_schema=schema`` (``durable_input_validator``)."""
        validator: Callable[[Any], Any] | None = self._pm.hook.durable_input_validator(schema=schema, task_id=task_id)
        return validator

    def observing(self) -> bool:
        """Whether any observer wants events now, so that the engine builds none for nobody.

        An observer that implements ``durable_observing`` is asked through the function it gave;
        the built-in logging plugin listens only while DEBUG is on for ``durable.events``.
        """
        return self._always_observed or any(listening() for _, _, listening in self._observers if listening)

    def emit(self, event: TaskExecutionEvent) -> None:
        """Tell every observer that listens (``durable_task_execution_event``); one that raises is
        logged."""
        for name, observe, listening in self._observers:
            if listening is not None and not listening():
                continue
            try:
                observe(event)
            except Exception:
                logger.exception(
                    "plugin %r failed to observe %s event of %s", name, event.kind, event.execution_id
                )

    def execution_context(self) -> dict[str, str] | None:
        """What to keep with a new execution (``durable_execution_context``), merged; one that
        raises or gives anything but a dict of strings is logged and left out."""
        if not self._context_givers:
            return None
        merged: dict[str, str] = {}
        for name, give in self._context_givers:
            try:
                context = give()
                if context is None:
                    continue
                if not isinstance(context, dict) or not all(
                        isinstance(k, str) and isinstance(v, str) for k, v in context.items()):
                    raise TypeError(f"expected a dict of strings or None, got {context!r:.100}")
            except Exception as exc:
                logger.warning("plugin %r failed to give an execution context: %s", name, _describe(exc))
                continue
            merged.update(context)
        if sum(len(k) + len(v) for k, v in merged.items()) > MAX_CONTEXT_SIZE:
            logger.warning("the execution context of plugins %s is over %d characters; not kept",
                           ", ".join(name for name, _ in self._context_givers), MAX_CONTEXT_SIZE)
            return None
        return merged or None

    def wrap_run(self, run: ExecutionRun) -> _Wrapped:
        """Every plugin's ``durable_wrap_run`` context manager around a run, entered in order and
        left in reverse; one that raises when entered or left is logged and the run goes on."""
        return _Wrapped(self._run_wrappers, run)

    def executor_running(self, executor: RunningExecutor) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """The background work of each plugin for a running executor (``durable_executor_running``)."""
        work: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        for name, start in _each_plugin(self._pm, "durable_executor_running"):
            try:
                (function,) = start(executor=executor) or [None]
            except Exception as exc:
                logger.warning("plugin %r failed to start its work beside an executor: %s", name, _describe(exc))
                continue
            if function is not None:
                work.append((name, function))
        return work

    def http_endpoints(self) -> dict[str, Callable[[], tuple[str, bytes]]]:
        """The GET endpoints plugins serve (``durable_http_endpoints``), by path; two plugins
        registering one path raise ``DurableExecutionError``."""
        endpoints: dict[str, tuple[str, Callable[[], tuple[str, bytes]]]] = {}
        for name, add in _each_plugin(self._pm, "durable_http_endpoints"):

            def register(path: str, render: Callable[[], tuple[str, bytes]], plugin: str = name) -> None:
                if path in endpoints:
                    raise DurableExecutionError(
                        f"endpoint {path} is registered by two plugins: {endpoints[path][0]!r} and {plugin!r}; "
                        f"uninstall one of them, or disable one with {DISABLE_ENV}={plugin}", is_retryable=False)
                endpoints[path] = (plugin, render)

            add(register=register)
        return {path: render for path, (_, render) in endpoints.items()}

    def register_commands(self, cli: click.Group) -> None:
        """Let every plugin add commands (``durable_register_commands``); one that raises is logged."""
        for name, add_commands in _each_plugin(self._pm, "durable_register_commands"):
            try:
                add_commands(cli=cli)
            except Exception as exc:
                logger.warning("plugin %r failed to add commands: %s", name, _describe(exc))


MAX_CONTEXT_SIZE = 4096
"""Characters (keys and values) of the context kept with one execution (``durable_execution_context``)."""


class _Wrapped:
    """The plugins' context managers around one run (a class, not a generator: it is on every run).

    Few objects: those a run keeps until it ends are promoted by the garbage collector, and in a
    busy executor each one brings its next full collection nearer."""

    __slots__ = ("_wrappers", "_run", "_entered")

    def __init__(self, wrappers: list[tuple[str, Callable[[Any], Any]]], run: ExecutionRun):
        self._wrappers = wrappers
        self._run = run
        self._entered: list[AbstractContextManager[object] | None] = []
        """The manager of each of ``wrappers`` in turn, None for one that gave none or failed."""

    def __enter__(self) -> None:
        for name, wrap in self._wrappers:
            try:
                manager = wrap(self._run)
                if manager is not None:
                    manager.__enter__()
            except Exception as exc:
                manager = None
                logger.warning("plugin %r failed to wrap a run of %s: %s", name, self._run.execution_id,
                               _describe(exc))
            self._entered.append(manager)

    def __exit__(self, *exc_info: Any) -> None:
        """Leaves each manager with the run's exception, if any; none can swallow it (trio's
        cancellation must go through), and one that raises is logged."""
        for (name, _), manager in zip(reversed(self._wrappers), reversed(self._entered)):
            if manager is None:
                continue
            try:
                manager.__exit__(*exc_info)
            except Exception as exc:
                logger.warning("plugin %r failed when a run ended: %s", name, _describe(exc))


_default: PluginRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> PluginRegistry:
    """The registry of this process, loaded on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PluginRegistry.load()
        return _default


def reset_default_registry() -> None:
    """Forget the process's registry, so the next ``default_registry()`` loads plugins again."""
    global _default
    with _default_lock:
        _default = None
