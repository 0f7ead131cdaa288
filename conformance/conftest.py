"""Self-tests of the conformance suite (``conformance/tests``).

``examples/`` holds a third-party storage with its own tests; ``tests/test_example_storage.py``
installs it and runs them, so they are not collected from here.
"""

collect_ignore = ["examples"]
