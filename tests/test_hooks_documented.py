"""Guards: every hook is documented with its exact signature, every hook has a test, and the
event kinds are the documented ones."""

import inspect
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from durable_core import EventKind
from durable_core.plugins import hookspecs

ROOT = Path(__file__).parents[1]
HOOKS = [
    function for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(function, "durable_spec")
]


def signature(hook: Callable[..., object]) -> str:
    """``def name(arg: Type) -> Return`` as written in the source (annotations are strings there)."""
    sig = inspect.signature(hook)
    parameters = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"def {hook.__name__}({parameters}) -> {sig.return_annotation}"


def test_hookspecs_are_found() -> None:
    assert {hook.__name__ for hook in HOOKS} >= {"durable_register_storages", "durable_task_execution_event"}


@pytest.mark.parametrize("hook", HOOKS, ids=lambda hook: hook.__name__)
def test_hook_is_documented_with_its_exact_signature(hook: Callable[..., object]) -> None:
    assert signature(hook) in (ROOT / "docs" / "plugins.md").read_text()


@pytest.mark.parametrize("hook", HOOKS, ids=lambda hook: hook.__name__)
def test_hook_has_a_test(hook: Callable[..., object]) -> None:
    tests = [path for path in (ROOT / "tests").rglob("test_*.py") if path.name != Path(__file__).name]
    assert any(hook.__name__ in path.read_text() for path in tests), f"no test mentions {hook.__name__}"


def test_event_kinds_are_the_documented_ones() -> None:
    text = (ROOT / "docs" / "plugins.md").read_text()
    section = text.split("#### Event kinds", 1)[1].split("\n#", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE)
    assert documented == [kind.value for kind in EventKind]
