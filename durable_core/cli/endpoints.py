"""``durable worker --metrics-port``: the GET endpoints plugins serve (``durable_http_endpoints``),
``/metrics`` among them, on a small HTTP server in a thread of its own, beside the engine."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .common import UserError

Render = Callable[[], tuple[str, bytes]]


def start_endpoint_server(port: int, endpoints: dict[str, Render]) -> ThreadingHTTPServer:
    """Serve ``endpoints`` on ``port`` (every interface) until ``shutdown()``; a port in use, or
    no plugin serving ``/metrics``, is a ``UserError``."""
    if "/metrics" not in endpoints:
        raise UserError("--metrics-port needs a plugin that serves /metrics; run: durable install prometheus")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            render = endpoints.get(self.path.split("?", 1)[0])
            if render is None:
                self._answer(404, "text/plain; charset=utf-8",
                             f"no such endpoint; try: {', '.join(sorted(endpoints))}\n".encode())
                return
            try:
                content_type, body = render()
            except Exception as exc:
                self._answer(500, "text/plain; charset=utf-8", f"{type(exc).__name__}: {exc}\n".encode())
                raise
            self._answer(200, content_type, body)

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes come every few seconds: not one line each."""

    try:
        server = ThreadingHTTPServer(("", port), Handler)
    except OSError as exc:
        raise UserError(f"cannot serve metrics on port {port}: {exc.strerror or exc}; choose another "
                        "--metrics-port") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="durable-endpoints", daemon=True).start()
    return server
