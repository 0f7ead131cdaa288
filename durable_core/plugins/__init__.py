"""durable's plugin framework (pluggy project ``durable``).

Plugins mark their hook functions with ``hookimpl``; the specs are in ``hookspecs``, loading and
the typed facade over the hooks in ``manager``. Nothing is loaded at import time.
"""

import pluggy

hookimpl = pluggy.HookimplMarker("durable")
"""Marks a function of a plugin as the implementation of the hook it is named after."""
