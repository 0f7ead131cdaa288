"""Durations written as text — ``7d``, ``12h``, ``30m``, ``90s``, ``2w`` — as the configuration file
and the command line take them, so that both read them alike."""

from __future__ import annotations

import re

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DAYS = 36500
"""The longest duration anything takes: 100 years, long before any execution was stored."""
MAX_SECONDS = MAX_DAYS * DURATION_UNITS["d"]
EXAMPLES = "7d, 12h, 30m, 90s or 2w"


def parse_duration(text: str) -> float:
    """The seconds ``text`` means; ``ValueError`` saying how to write one when it is not a duration."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration; write e.g. {EXAMPLES}")
    return float(match[1]) * DURATION_UNITS[match[2]]
