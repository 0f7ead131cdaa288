"""The suite against the in-memory storage: every required check passes."""

import pytest
from durable_conformance import StorageConformance
from durable_storage_memory import MemoryStorage

pytest_plugins = ["durable_conformance.plugin"]


class TestMemoryStorage(StorageConformance):
    @pytest.fixture
    def storage_factory(self):
        return MemoryStorage
