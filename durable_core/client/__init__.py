"""Clients for code that is not trio: ``Client`` (plain Python, thread-safe) and ``AsyncClient``
(asyncio). Both enqueue by task id without the task definitions, wait for, inspect, cancel and
wake executions, and can run an executor in-process (``run_executor``). See docs/integration.md."""

from .async_client import AsyncClient as AsyncClient
from .portal import PortalClosedError as PortalClosedError
from .sync_client import Client as Client

__all__ = ["AsyncClient", "Client", "PortalClosedError"]
