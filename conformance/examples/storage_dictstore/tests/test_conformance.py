"""The durable conformance suite against DictStore, by the pytest route."""

import pytest
from durable_conformance import StorageConformance
from durable_storage_dictstore import open_dictstore

pytest_plugins = ["durable_conformance.plugin"]


class TestDictStore(StorageConformance):
    @pytest.fixture
    def storage_factory(self, tmp_path):
        # called again, it reopens the same snapshot: the durability checks close and reopen
        return lambda: open_dictstore(path=tmp_path / "store.pickle")


class TestDictStoreInMemory(StorageConformance):
    """Without a path it is not persistent: the durability checks skip, naming the capability."""

    @pytest.fixture
    def storage_factory(self):
        return open_dictstore
