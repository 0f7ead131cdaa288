"""The ASGI application: the API, the live events, the dashboard, and the token gate in front.

``create_app(service, token=...)`` is all a host needs: ``durable serve`` runs it on Hypercorn's
trio worker; any ASGI server on trio would do.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from importlib import resources
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from . import api, live
from .service import Service

COOKIE = "durable_token"
"""The cookie that carries the token for the dashboard (a browser's EventSource sends no header)."""
OPEN_PATHS = frozenset({"/healthz"})
"""Answered without the token: a load balancer's health check learns nothing else."""


def _static(name: str) -> str:
    return (resources.files("durable_web") / "static" / name).read_text(encoding="utf-8")


def create_app(service: Service, *, token: str | None = None,
               endpoints: Mapping[str, Callable[[], tuple[str, bytes]]] | None = None) -> ASGIApp:
    """The whole application for ``service``; with ``token``, every request but ``/healthz``
    needs it (``Authorization: Bearer TOKEN``, or the dashboard's cookie). ``endpoints``: the GET
    endpoints other plugins serve (``durable_http_endpoints``), by path."""
    index = _static("index.html")
    openapi = json.loads((resources.files("durable_web") / "openapi.json").read_text(encoding="utf-8"))

    async def dashboard(request: Request) -> Response:
        return HTMLResponse(index, headers={"Cache-Control": "no-store"})

    async def openapi_json(request: Request) -> Response:
        return api.json_response(openapi)

    async def not_found(request: Request, exc: Exception) -> Response:
        return api.error_response(404, f"no such endpoint: {request.method} {request.url.path}; "
                                       "the API is described at /api/v1/openapi.json")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return api.error_response(405, f"{request.method} is not allowed on {request.url.path}; "
                                       "see /api/v1/openapi.json")

    v1 = "/api/v1"
    routes = [
        Route("/", dashboard),
        Route("/healthz", api.healthz(service)),
        Route(f"{v1}/openapi.json", openapi_json),
        Route(f"{v1}/tasks/{{task_id}}/executions", api.enqueue(service), methods=["POST"]),
        Route(f"{v1}/tasks/{{task_id}}/wakeup/{{unique_id}}", api.wakeup(service), methods=["POST"]),
        Route(f"{v1}/executions", api.list_executions(service)),
        Route(f"{v1}/executions/{{execution_id}}", api.get_execution(service)),
        Route(f"{v1}/executions/{{execution_id}}/tree", api.get_tree(service)),
        Route(f"{v1}/executions/{{execution_id}}/cancel", api.cancel(service), methods=["POST"]),
        Route(f"{v1}/workers", api.workers(service)),
        Route(f"{v1}/stats", api.stats(service)),
        Route(f"{v1}/events", live.events(service)),
        Mount("/static", StaticFiles(packages=[("durable_web", "static")])),
        # what other plugins serve (durable_http_endpoints): /metrics with durable-prometheus
        *(Route(path, _plugin_endpoint(render)) for path, render in (endpoints or {}).items()),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed})
    return app if token is None else TokenGate(app, token)


def _plugin_endpoint(render: Callable[[], tuple[str, bytes]]) -> Callable[[Request], Response]:
    """A plugin's GET endpoint; a plain function, so Starlette calls it in a worker thread as the
    hook asks (``render`` may block briefly)."""

    def endpoint(request: Request) -> Response:
        content_type, body = render()
        return Response(body, headers={"Content-Type": content_type})

    return endpoint


class TokenGate:
    """Lets a request through only with the token: ``Authorization: Bearer TOKEN`` (API clients)
    or the ``durable_token`` cookie, which opening the dashboard at ``/?token=TOKEN`` sets
    (``SameSite=Strict``, ``HttpOnly``) before redirecting to ``/`` so the token leaves the URL."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token.encode()

    def _valid(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        bearer = headers.get("authorization", "")
        if bearer[:7].lower() == "bearer " and self._valid(bearer[7:].strip()):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self._valid(request.cookies.get(COOKIE)):
            await self.app(scope, receive, send)
            return
        response = self._refusal(scope, request, bool(bearer))
        await response(scope, receive, send)

    def _refusal(self, scope: Scope, request: Request, had_header: bool) -> Response:
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        if scope["path"] == "/" and given is not None and self._valid(given):
            response: Response = RedirectResponse("/", 303)
            response.set_cookie(COOKIE, given, httponly=True, samesite="strict", path="/")
            return response
        if scope["path"].startswith("/api/"):
            message = ("wrong token" if had_header else
                       "missing token: send the header Authorization: Bearer TOKEN (the --token of durable serve)")
            response = api.error_response(401, message)
            response.headers["WWW-Authenticate"] = 'Bearer realm="durable"'
            return response
        wrong = "<p class=error>Wrong token.</p>" if given is not None else ""
        return HTMLResponse(LOGIN.replace("{wrong}", wrong), 401)


LOGIN = """<!doctype html><html lang=en><head><meta charset=utf-8><title>durable: token</title>
<meta name=viewport content="width=device-width, initial-scale=1">
<style>body{font:15px system-ui,sans-serif;max-width:28rem;margin:4rem auto;color:#1d2330}
input{font:inherit;padding:.4rem;width:100%;box-sizing:border-box;margin:.5rem 0}.error{color:#b42318}
button{font:inherit;padding:.4rem 1rem}</style></head><body><h1>durable</h1>
<p>This dashboard needs the token given to <code>durable serve --token</code>.</p>{wrong}
<form method=get action="/"><input type=password name=token autofocus placeholder=token aria-label=token>
<button>Open the dashboard</button></form></body></html>"""

