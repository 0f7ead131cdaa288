"""The JSON API under ``/api/v1`` (described by ``openapi.json``).

Every handler goes through ``endpoint``: a mistake of the caller is one JSON error with the
right status (400, 404, 413, 503), an unexpected failure a 500 without a traceback (the traceback
goes to the server's log), and nothing is stored unless the whole request is valid.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from durable_core.client.operations import EnqueueOptions, check_statuses
from durable_core.errors import DurableExecutionError, DurableExecutionNotFoundError
from durable_core.serialization import SerializationError
from durable_core.storage import ExecutionRecord
from durable_core.tasks import check_task_id

from . import views
from .service import Service

logger = logging.getLogger("durable.web")

MAX_PAGE = 1000
DEFAULT_PAGE = 50
MAX_TREE = 5000
"""Executions a tree answer holds at most (``truncated`` tells when there were more)."""


class ApiError(Exception):
    """A request the API refuses: its HTTP status and a message that says how to fix it."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(value: Any, status: int = 200) -> Response:
    return Response(views.to_json(value), status, media_type="application/json")


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message, "status": status}, status)


Handler = Callable[[Service, Request], Awaitable[Response]]


def endpoint(handler: Handler) -> Callable[[Service], Callable[[Request], Awaitable[Response]]]:
    """``handler`` bound to a service, with every failure turned into one JSON error."""

    def bind(service: Service) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def handle(request: Request) -> Response:
            try:
                return await handler(service, request)
            except ApiError as exc:
                return error_response(exc.status, exc.message)
            except DurableExecutionNotFoundError as exc:
                return error_response(404, exc.message)
            except SerializationError as exc:
                return error_response(400, exc.message)
            except DurableExecutionError as exc:
                stopping = service.stopping.is_set() or exc.message == "Durable executor shutdown"
                return error_response(503 if stopping else 400, exc.message)
            except ClientDisconnect:
                return error_response(400, "the client closed the connection before sending the whole body")
            except Exception:
                logger.exception("%s %s failed", request.method, request.url.path)
                return error_response(500, "internal error; the server's log has the details")

        return handle

    return bind


# ----------------------------------------------------------------------------- reading requests


def _no_nan(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


async def read_json(request: Request, limit: int, fields: Sequence[str]) -> dict[str, Any]:
    """The body: a JSON object of at most ``limit`` bytes whose keys are among ``fields``."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"request body of {length} bytes is over the limit of {limit} bytes "
                            "(the executor option max_serialized_input_size, plus 64 KiB)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes "
                                "(the executor option max_serialized_input_size, plus 64 KiB)")
    if not body.strip():
        return {}
    try:
        value = json.loads(body, parse_constant=_no_nan)
    except RecursionError:
        raise ApiError(400, "malformed JSON body: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, NaN, an integer too long to read
        raise ApiError(400, f"malformed JSON body: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"the body must be a JSON object with {' and/or '.join(fields)}, "
                            f"got a {type(value).__name__}")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r} in the body; it takes: {', '.join(fields)}")
    return value


def query(request: Request, allowed: Sequence[str]) -> dict[str, str]:
    """The query parameters, each at most once and all among ``allowed``."""
    params = request.query_params
    for key in params:
        if key not in allowed:
            raise ApiError(400, f"unknown query parameter {key!r}; this endpoint takes: {', '.join(allowed) or 'none'}")
        if len(params.getlist(key)) > 1:
            raise ApiError(400, f"query parameter {key!r} given more than once; give it once")
    return dict(params)


def task_id_of(request: Request) -> str:
    try:
        return check_task_id(request.path_params["task_id"])
    except ValueError as exc:
        raise ApiError(404, f"unknown task: {exc}") from None


async def known_task(service: Service, request: Request) -> str:
    task_id = task_id_of(request)
    if not await service.is_known_task(task_id):
        raise ApiError(404, f"unknown task {task_id!r}: this server's executor does not define it and no execution "
                            "of it is stored; check the id, or start the server with the module that defines it: "
                            "durable serve MODULE:EXECUTOR")
    return task_id


def page_size(text: str | None) -> int:
    if text is None:
        return DEFAULT_PAGE
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise ApiError(400, f"limit must be an integer from 1 to {MAX_PAGE}, got {text!r}")
    return int(text)


def statuses_of(text: str | None) -> list[Any] | None:
    """``status``: one status or several, comma-separated."""
    if not text:
        return None
    try:
        return check_statuses([name.strip() for name in text.split(",")])
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


# ----------------------------------------------------------------------------- handlers


@endpoint
async def enqueue(service: Service, request: Request) -> Response:
    task_id = task_id_of(request)
    body = await read_json(request, service.body_limit, ("input", "idempotency_key"))
    try:
        options = EnqueueOptions(idempotency_key=body.get("idempotency_key"))
    except (TypeError, ValueError) as exc:
        raise ApiError(400, str(exc)) from None
    await known_task(service, request)
    (execution_id,) = await service.operations.enqueue(task_id, [body.get("input")], options)
    return json_response({"execution_id": execution_id}, 201)


@endpoint
async def list_executions(service: Service, request: Request) -> Response:
    params = query(request, ("status", "task_id", "limit", "cursor"))
    limit = page_size(params.get("limit"))
    try:
        before = views.decode_cursor(params["cursor"]) if params.get("cursor") else None
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    records = await service.storage.list_executions(
        statuses=statuses_of(params.get("status")), task_id=params.get("task_id") or None, limit=limit + 1,
        before=before)
    return json_response(page(records, limit))


def page(records: Sequence[ExecutionRecord], limit: int) -> dict[str, Any]:
    """A page of the list from ``limit + 1`` records: the extra one only says there are more."""
    shown = records[:limit]
    more = len(records) > limit
    return {"executions": [views.summary(record) for record in shown],
            "next_cursor": views.encode_cursor(shown[-1]) if more else None}


@endpoint
async def get_execution(service: Service, request: Request) -> Response:
    query(request, ())
    record = await service.executor.engine.get_record(request.path_params["execution_id"])
    return json_response(views.detail(record, service.executor.decode))


@endpoint
async def get_tree(service: Service, request: Request) -> Response:
    query(request, ())
    engine = service.executor.engine
    record = await engine.get_record(request.path_params["execution_id"])
    if record.root is not None:
        record = await engine.get_record(record.root.execution_id)
    return json_response(await tree(service, record))


async def tree(service: Service, root: ExecutionRecord) -> dict[str, Any]:
    """The tree under ``root``: each node its summary and its ``children`` (then its finalize,
    marked ``is_finalize``), read one level per storage call, at most ``MAX_TREE`` nodes."""
    top = {**views.summary(root), "is_finalize": False, "children": []}
    level = [(root, top)]
    count = 1
    while level and count < MAX_TREE:
        below = [(node, ref, ref is record.finalize) for record, node in level
                 for ref in (*record.children, *([record.finalize] if record.finalize else []))]
        below = below[:MAX_TREE - count]
        found = await service.storage.get_executions([ref.execution_id for _, ref, _ in below])
        level = []
        for (parent, ref, is_finalize), record in zip(below, found):
            node: dict[str, Any] = (views.summary(record) if record is not None else
                                    {"task_id": ref.task_id, "execution_id": ref.execution_id, "status": "deleted"})
            node.update(is_finalize=is_finalize, children=[])
            parent["children"].append(node)
            if record is not None:
                level.append((record, node))
        count += len(below)
    return {"tree": top, "truncated": count >= MAX_TREE}


@endpoint
async def cancel(service: Service, request: Request) -> Response:
    query(request, ())
    execution_id = request.path_params["execution_id"]
    await service.operations.cancel(execution_id)
    record = await service.executor.engine.get_record(execution_id)
    return json_response(views.summary(record))


@endpoint
async def wakeup(service: Service, request: Request) -> Response:
    task_id = task_id_of(request)
    body = await read_json(request, service.body_limit, ("output", "error"))
    if "output" in body and "error" in body:
        raise ApiError(400, "give output (to complete it) or error (to fail it), not both")
    error = body.get("error")
    if "error" in body and (not isinstance(error, str) or not error.strip()):
        raise ApiError(400, f"error must be a non-empty message string, got {error!r}")
    execution = await service.operations.wakeup(task_id, request.path_params["unique_id"], body.get("output"), error)
    return json_response({"execution_id": execution.execution_id, "task_id": execution.task_id,
                          "status": str(execution.status)})


@endpoint
async def workers(service: Service, request: Request) -> Response:
    query(request, ())
    live = await service.storage.list_executors(service.executor.now() - service.lease_duration)
    return json_response({"workers": [views.worker(executor) for executor in live]})


@endpoint
async def stats(service: Service, request: Request) -> Response:
    query(request, ())
    return json_response(service.stats())


@endpoint
async def healthz(service: Service, request: Request) -> Response:
    """Healthy when the storage answers (one cheap read)."""
    try:
        await service.storage.list_executors(service.executor.now())
    except Exception as exc:
        return error_response(503, f"storage unavailable: {type(exc).__name__}")
    return json_response({"status": "ok"})
