"""The controller's HTTP surface (``/metrics``, ``/healthz``, ``/readyz``, the push webhook),
served by hypercorn's HTTP/1.1 engine (h11) on an asyncio loop in one daemon thread.

Why a library: the parser is h11's (a malformed request line, a header without a colon, a
``Content-Length`` that is negative, not digits or given twice, or both ``Content-Length`` and
``Transfer-Encoding`` are refused with 400 before our code runs), and connections are asyncio
streams, so a slow client holds no thread. Issue 20 found the stdlib server we had before
reading ``Content-Length: -1`` as "read to EOF", keeping one thread per slow client and
printing tracebacks. What hypercorn does not bound, this module does, all in :class:`Limits`:

- **headers**: at most ``max_header`` bytes (431), complete within ``header_timeout`` seconds of
  the connection (or of the previous response): hypercorn's keep-alive timer runs until a
  request's headers are complete, so a client that drips bytes is cut off all the same;
- **body**: a declared length over ``max_body`` is refused (413) before a byte of it is read;
  a chunked body is counted as it arrives and refused at the limit; the whole body must
  arrive within ``body_timeout`` (408), and each read within ``read_timeout``;
- **connections**: at most ``max_connections`` at once (hypercorn has no such limit, so the
  accept callback is ours, around its ``TCPServer``). At the limit a newcomer evicts the
  connection that has waited longest without sending a request, so clients holding slots
  open cannot lock out one that sends its request at once; with every slot serving a
  request, the newcomer is closed. With TLS, the handshake must finish within
  ``header_timeout``;
- **errors**: a handler that raises answers 500 and logs one line with the exception's type,
  never a traceback (nothing a client sends reaches the log verbatim).

Memory is therefore bounded by ``max_connections × (max_header + max_body)`` plus a small
constant per connection. Tested on loopback by ``tests/controller/test_httpserver.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config

log = logging.getLogger("cu-reconciler.http")


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int = 1024 * 1024
    max_header: int = 16 * 1024
    max_connections: int = 32
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    read_timeout: float = 5.0
    methods: frozenset[str] = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]
    """Lower-case names; a repeated header keeps its first value."""
    body: bytes


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Handler = Callable[[Request], Response]


@dataclass(frozen=True, slots=True)
class TLS:
    cert: str
    key: str

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Server:
    """One listening socket and the thread serving it; :meth:`shutdown` stops both."""

    name: str
    host: str
    port: int
    refused: dict[int, int] = field(default_factory=dict)
    """Requests refused before the handler, by status (and 0: connections over the limit)."""
    active: int = 0
    idle: OrderedDict[Any, asyncio.StreamWriter] = field(default_factory=OrderedDict)
    """Connections without a request in progress (waiting for headers), oldest first."""
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _thread: threading.Thread | None = None

    def count(self, status: int) -> None:
        self.refused[status] = self.refused.get(status, 0) + 1

    def shutdown(self, timeout: float = 3.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)


def _app(server: Server, handler: Handler, limits: Limits) -> Any:
    async def send_response(send: Any, resp: Response, *, close: bool = False) -> None:
        headers = [
            (b"content-type", resp.content_type.encode()),
            (b"content-length", str(len(resp.body)).encode()),
        ]
        if close:  # the body was not read: the connection cannot carry another request
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": resp.body})

    async def read_body(receive: Any) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Refused(400, "client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limits.max_body:
                raise _Refused(413, f"body over {limits.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        client = tuple(scope.get("client") or ())
        writer = server.idle.pop(client, None)  # a request in progress: not evictable
        try:
            await handle(scope, receive, send)
        finally:
            if writer is not None and not writer.is_closing():
                server.idle[client] = writer  # waiting for its next request (keep-alive)

    async def handle(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers: dict[str, str] = {}
        size = 0
        for name, value in scope.get("headers") or ():
            size += len(name) + len(value) + 4
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        method = str(scope["method"])
        try:
            # h11 bounds an incomplete head; one that arrived whole in a single read is
            # measured here (it is at most one read, 64 KiB, already in memory).
            if size > limits.max_header:
                raise _Refused(431, "request headers too large")
            if method not in limits.methods:
                raise _Refused(405, "method not allowed")
            declared = headers.get("content-length")
            if declared is not None and not declared.isdigit():  # h11 refuses these first
                raise _Refused(400, "invalid Content-Length")
            if declared is not None and int(declared) > limits.max_body:
                raise _Refused(413, f"body over {limits.max_body} bytes")
            try:
                body = await asyncio.wait_for(read_body(receive), limits.body_timeout)
            except TimeoutError:
                raise _Refused(408, "body not received in time") from None
        except _Refused as refused:
            server.count(refused.status)
            await send_response(send, Response(refused.status, f"{refused}\n".encode()), close=True)
            return
        try:
            resp = handler(Request(method, str(scope.get("path") or "/"), headers, body))
        except Exception as exc:  # a bug in a handler: one line, no traceback, and a 500
            log.warning("%s handler failed", server.name, extra={"error": type(exc).__name__})
            resp = Response(500, b"internal error\n")
        await send_response(send, resp)

    return app


def _config(limits: Limits) -> Config:
    config = Config()
    config.keep_alive_timeout = limits.header_timeout
    config.read_timeout = max(1, round(limits.read_timeout))
    config.h11_max_incomplete_size = limits.max_header
    config.h2_max_concurrent_streams = 4
    config.h2_max_header_list_size = limits.max_header
    config.ssl_handshake_timeout = limits.header_timeout
    config.include_server_header = False
    config.accesslog = None
    config.errorlog = None
    config.alpn_protocols = ["http/1.1"]
    return config


async def _serve(
    server: Server,
    sock: socket.socket,
    handler: Handler,
    limits: Limits,
    tls: TLS | None,
    started: threading.Event,
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(
        lambda _loop, ctx: log.debug(
            "%s: %s", server.name, ctx.get("message"), extra={"error": repr(ctx.get("exception"))}
        )
    )
    server._loop, server._stop = loop, asyncio.Event()
    config = _config(limits)
    app = ASGIWrapper(_app(server, handler, limits))
    context = WorkerContext(None)
    state: dict[str, Any] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if server.active >= limits.max_connections:
            if not server.idle:  # every slot is serving a request: refuse the newcomer
                server.count(0)
                writer.transport.abort()
                return
            # Evict the connection that has waited longest without sending a request: a
            # client holding slots open (slowloris) cannot lock out one that sends at once.
            _, oldest = server.idle.popitem(last=False)
            server.count(0)
            oldest.transport.abort()
        task = asyncio.current_task()
        if task is not None:
            tasks.add(task)
        client = tuple(writer.get_extra_info("peername") or ())[:2]
        server.idle[client] = writer
        server.active += 1
        try:
            await TCPServer(app, loop, config, context, state, reader, writer)
        except Exception as exc:  # a transport error hypercorn did not absorb: one line
            log.debug("%s connection ended", server.name, extra={"error": type(exc).__name__})
        finally:
            server.active -= 1
            server.idle.pop(client, None)
            if task is not None:
                tasks.discard(task)

    listener = await asyncio.start_server(
        connected,
        sock=sock,
        ssl=tls.context() if tls else None,
        ssl_handshake_timeout=limits.header_timeout if tls else None,
    )
    started.set()
    try:
        await server._stop.wait()
    finally:
        listener.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=128)
    sock.setblocking(False)
    return sock


def start(
    handler: Handler,
    host: str,
    port: int,
    name: str,
    limits: Limits = Limits(),
    tls: TLS | None = None,
) -> Server:
    """Serve ``handler`` on ``host:port`` (port 0: any free one) from a daemon thread.

    The socket is bound before this returns, so a port in use fails here, in the caller."""
    sock = _listen(host, port)
    server = Server(name, host, int(sock.getsockname()[1]))
    if tls is not None:
        tls.context()  # a bad certificate or key fails now, not on the first connection
    started = threading.Event()

    def run() -> None:
        try:
            asyncio.run(_serve(server, sock, handler, limits, tls, started))
        except Exception as exc:
            log.error("%s server stopped", name, extra={"error": f"{type(exc).__name__}: {exc}"})
        finally:
            sock.close()
            started.set()

    server._thread = threading.Thread(target=run, name=name, daemon=True)
    server._thread.start()
    started.wait(10)
    return server
