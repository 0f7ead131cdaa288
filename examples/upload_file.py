"""The main job: upload a file, extract its title and summary in parallel, then finalize.

The workflow is defined in ``durable_core/cli/demo.py`` (so that ``durable demo`` ships it); this
script runs it the same way. It uses the configured storage, SQLite in ./durable.db by default.
Interrupt it (Ctrl-C) or kill it and run it again: the same workflow (found by its idempotency
key) resumes where it stopped.

    python examples/upload_file.py [--storage memory] [--file NAME]

Expected output: completed: {"file": "report.pdf", "title": "Title of report.pdf", "summary": "Summary of report.pdf"}
"""

from __future__ import annotations

import sys

import trio

from durable_core.cli.demo import build, run_demo

from _cli import example_parser

if __name__ == "__main__":
    parser = example_parser(__doc__)
    parser.add_argument("--file", default="report.pdf")
    args = parser.parse_args()
    sys.exit(trio.run(run_demo, *build(args.storage), args.file))
