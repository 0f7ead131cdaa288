"""The suite against the SQLite storage, when it is installed: every check passes, durability and
several storage objects on one file included."""

import importlib.util

import pytest
from durable_conformance import StorageConformance

pytest_plugins = ["durable_conformance.plugin"]

if importlib.util.find_spec("durable_storage_sqlite") is None:
    pytest.skip("durable-storage-sqlite is not installed (pip install -e plugins/storage_sqlite)",
                allow_module_level=True)

from durable_storage_sqlite import SqliteStorage


class TestSqliteStorage(StorageConformance):
    @pytest.fixture
    def storage_factory(self, tmp_path):
        return lambda: SqliteStorage.open(tmp_path / "durable.db")
