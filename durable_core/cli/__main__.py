"""``python -m durable_core.cli``: the ``durable`` command."""

from . import main

main()
