"""``python -m durable_conformance NAME [--option key=value] [-- pytest args]``."""

import sys

from .by_name import main

sys.exit(main())
