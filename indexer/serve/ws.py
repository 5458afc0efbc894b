"""Subscriptions over the wire: the graphql-transport-ws protocol on a WebSocket at
``/graphql`` (queries too), and server-sent events (``Accept: text/event-stream`` on
``/graphql``, the "distinct connections" mode of GraphQL over SSE: ``next`` events, then
``complete``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from graphql import OperationType

from indexer import metrics
from indexer.serve.engine import Answer, Engine, formatted
from indexer.serve.errors import ApiError
from indexer.serve.live import Feed
from indexer.serve.resolve import Reader, Request
from indexer.serve.values import parse_request

log = logging.getLogger(__name__)

PROTOCOL = "graphql-transport-ws"
INIT_TIMEOUT = 10.0
MAX_MESSAGE = 256 * 1024


def _stream_error(e: Exception) -> dict[str, Any]:
    if isinstance(e, ApiError):
        return {"errors": [{"message": str(e), "extensions": {"code": e.code}}]}
    log.error("serve: a subscription failed: %s: %s", type(e).__name__, e, exc_info=e)
    return {"errors": [{"message": "internal error (logged by the server)",
                        "extensions": {"code": "INTERNAL"}}]}


class Transport:
    def __init__(self, engine: Engine, reader: Reader, feed: Feed) -> None:
        self.engine = engine
        self.reader = reader
        self.feed = feed

    async def _start(self, payload: Any) -> Answer | AsyncIterator[Any] | None:
        """A subscription's stream, a query's answer, or None for a payload that is not a
        request."""
        if not isinstance(payload, dict):
            return None
        query, variables, name = (payload.get("query"), payload.get("variables"),
                                  payload.get("operationName"))
        prepared = self.engine.admit(query, variables, name, _ALL)
        if isinstance(prepared, Answer):
            return prepared
        request = Request(self.reader)
        if self.engine.kind(prepared, name) is OperationType.SUBSCRIPTION:
            return await self.engine.subscribe(query, variables, name, request)
        return await self.engine.run(query, variables, name, request)

    # ---------------------------------------------------------------- graphql-transport-ws

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=(PROTOCOL,), heartbeat=30,
                                   max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        if ws.ws_protocol != PROTOCOL:
            await ws.close(code=4406, message=b"Subprotocol not acceptable")
            return ws
        ops: dict[str, asyncio.Task[None]] = {}
        acked = asyncio.Event()
        timer = asyncio.create_task(self._init_deadline(ws, acked))
        metrics.API_SUBSCRIPTIONS.labels(transport="ws")
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    await ws.close(code=4400, message=b"Invalid message")
                    break
                try:
                    data = parse_request(msg.data)
                except ValueError:
                    data = None
                close = await self._message(ws, data, acked, ops)
                if close is not None:
                    await ws.close(code=close[0], message=close[1].encode())
                    break
        finally:
            timer.cancel()
            for task in ops.values():
                task.cancel()
            await asyncio.gather(*ops.values(), return_exceptions=True)
        return ws

    async def _init_deadline(self, ws: web.WebSocketResponse, acked: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(acked.wait(), INIT_TIMEOUT)
            return
        await ws.close(code=4408, message=b"Connection initialisation timeout")

    async def _message(self, ws: web.WebSocketResponse, data: Any, acked: asyncio.Event,
                       ops: dict[str, asyncio.Task[None]]) -> tuple[int, str] | None:
        """Handle one client message; the close code and reason when it ends the socket."""
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "connection_init":
            if acked.is_set():
                return 4429, "Too many initialisation requests"
            acked.set()
            await ws.send_str(orjson.dumps({"type": "connection_ack"}).decode())
        elif kind == "ping":
            await ws.send_str(orjson.dumps({"type": "pong"}).decode())
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            if not acked.is_set():
                return 4401, "Unauthorized"
            op_id = data.get("id")
            if not isinstance(op_id, str) or not op_id:
                return 4400, "Invalid message: subscribe needs an id"
            if op_id in ops and not ops[op_id].done():
                return 4409, f"Subscriber for {op_id[:64]} already exists"
            ops[op_id] = asyncio.create_task(self._operation(ws, op_id, data.get("payload"),
                                                             ops))
        elif kind == "complete":
            task = ops.pop(data.get("id"), None) if isinstance(data.get("id"), str) else None
            if task is not None:
                task.cancel()
        else:
            return 4400, "Invalid message"
        return None

    async def _operation(self, ws: web.WebSocketResponse, op_id: str, payload: Any,
                         ops: dict[str, asyncio.Task[None]]) -> None:
        async def send(message: dict[str, Any]) -> None:
            await ws.send_str(orjson.dumps({**message, "id": op_id}).decode())

        try:
            started = await self._start(payload)
            if started is None:
                await ws.close(code=4400, message=b"Invalid message: subscribe payload")
                return
            if isinstance(started, Answer):
                if "data" not in started.body:  # refused before it ran
                    await send({"type": "error", "payload": started.body["errors"]})
                    return
                await send({"type": "next", "payload": started.body})
            else:
                gauge = metrics.API_SUBSCRIPTIONS.labels(transport="ws")
                gauge.inc()
                try:
                    async for result in started:
                        await send({"type": "next", "payload": _result(result)})
                except Exception as e:  # noqa: BLE001 - the top of one subscription
                    await send({"type": "next", "payload": _stream_error(e)})
                finally:
                    gauge.dec()
                    await _close(started)
            await send({"type": "complete"})
        except (ConnectionResetError, RuntimeError):
            pass  # the socket closed
        finally:
            if ops.get(op_id) is asyncio.current_task():
                ops.pop(op_id, None)

    # ------------------------------------------------------------------------------ SSE

    async def event_stream(self, request: web.Request, body: dict[str, Any]
                           ) -> web.StreamResponse:
        started = await self._start(body)
        if started is None or isinstance(started, Answer) and "data" not in started.body:
            refusal = started.body if isinstance(started, Answer) else {
                "errors": [{"message": "the body is not a GraphQL request"}]}
            return web.Response(status=started.status if isinstance(started, Answer) else 400,
                                body=orjson.dumps(refusal), content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        try:
            if isinstance(started, Answer):
                await _event(resp, "next", started.body)
            else:
                gauge = metrics.API_SUBSCRIPTIONS.labels(transport="sse")
                gauge.inc()
                try:
                    async for result in started:
                        await _event(resp, "next", _result(result))
                except Exception as e:  # noqa: BLE001 - the top of one subscription
                    await _event(resp, "next", _stream_error(e))
                finally:
                    gauge.dec()
                    await _close(started)
            await resp.write(b"event: complete\ndata:\n\n")
        except (ConnectionResetError, RuntimeError):
            pass
        return resp


_ALL = frozenset(OperationType)


def _result(result: Any) -> dict[str, Any]:
    if result.errors:
        return {"data": result.data, "errors": [formatted(e) for e in result.errors]}
    return {"data": result.data}


async def _event(resp: web.StreamResponse, name: str, payload: dict[str, Any]) -> None:
    await resp.write(b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n")


async def _close(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
