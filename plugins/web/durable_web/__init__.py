"""HTTP API and web dashboard for durable (distribution ``durable-web``): ``durable serve``.

Embed it in your own trio program with ``serve(executor, host=..., port=..., token=...)``, or take
the ASGI application of ``create_app(Service(executor))`` to any ASGI server on trio.

The names are imported on first use: durable loads this package's plugin in every executor and
every command, and Starlette and Hypercorn are needed only by ``durable serve``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app as create_app
    from .server import serve as serve
    from .service import Service as Service

_MODULES = {"create_app": ".app", "serve": ".server", "Service": ".service"}

__all__ = ["Service", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULES[name], __name__), name)
