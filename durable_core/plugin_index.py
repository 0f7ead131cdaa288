"""Short plugin names and their distributions, for ``durable install NAME``.

Generated from the ``[project.entry-points.durable]`` tables of ``plugins/*/pyproject.toml`` and
``conformance/pyproject.toml`` by ``python tests/test_cli_plugin_index.py``; a test fails when it
is out of date. It is Python data so that an installed durable-core, which has no ``plugins/``
folder, knows it.
"""

PLUGIN_DISTRIBUTIONS: dict[str, str] = {
    "cbor": "durable-serializer-cbor",
    "conformance": "durable-conformance",
    "memory": "durable-storage-memory",
    "otel": "durable-otel",
    "postgres": "durable-storage-postgres",
    "prometheus": "durable-prometheus",
    "sqlite": "durable-storage-sqlite",
    "web": "durable-web",
}
