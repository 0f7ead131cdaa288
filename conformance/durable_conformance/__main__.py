"""``python -m durable_conformance NAME [--option key=value] [-- pytest args]``."""

from .by_name import main

main()
