"""Support for testing code built on durable.

``durable_core.testing.pytest_plugin`` runs ``async def`` tests under trio in virtual time. It
imports pytest, so nothing in the core imports it: only pytest loads it.
"""
