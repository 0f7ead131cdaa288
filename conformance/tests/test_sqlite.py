"""The suite against the SQLite storage, when it is installed: every check passes, durability and
several storage objects on one file included."""

import pytest
from durable_conformance import StorageConformance

pytest_plugins = ["durable_conformance.plugin"]

sqlite = pytest.importorskip(
    "durable_storage_sqlite", reason="durable-storage-sqlite is not installed (pip install -e plugins/storage_sqlite)"
)


class TestSqliteStorage(StorageConformance):
    @pytest.fixture
    def storage_factory(self, tmp_path):
        return lambda: sqlite.SqliteStorage.open(tmp_path / "durable.db")
