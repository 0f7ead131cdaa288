"""The suite against the PostgreSQL storage, when it is installed: every check passes, durability
and several storage objects on one schema included. Each check gets a schema of its own."""

import pytest
from durable_conformance import StorageConformance

pytest_plugins = ["durable_conformance.plugin"]

postgres = pytest.importorskip(
    "durable_storage_postgres",
    reason="durable-storage-postgres is not installed (pip install -e plugins/storage_postgres)",
)

from durable_storage_postgres.testing import scratch_schema, test_dsn


class TestPostgresStorage(StorageConformance):
    @pytest.fixture
    def storage_factory(self):
        dsn = test_dsn()
        with scratch_schema(dsn, "conformance") as schema:
            yield lambda: postgres.PostgresStorage.open(dsn, schema=schema)
