"""The core's tests run ``async def`` tests under trio in virtual time, tests marked ``real_clock``
on the real clock: the runner is ``durable_core.testing.pytest_plugin``, whose hooks and ``clock``
fixture are taken in here so that they apply to this folder only."""

from durable_core.testing.pytest_plugin import clock, pytest_configure, pytest_pyfunc_call

__all__ = ["clock", "pytest_configure", "pytest_pyfunc_call"]
