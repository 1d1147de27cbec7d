"""ASGI middleware of the web app: security headers, the Host check, the access log."""

from __future__ import annotations

import logging
import time

from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ErrorResponse

# One line per request: client, method, path, status, response bytes, seconds.
ACCESS_LOG = logging.getLogger("tdanet.web.access")
# The page loads nothing from elsewhere; audio players read blob: URLs made in the page.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; media-src 'self' blob:; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class HttpMiddleware:
    """ASGI middleware acting on HTTP requests (:meth:`handle`); others pass through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class SecurityHeaders(HttpMiddleware):
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers[key] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def host_name(header: str) -> str:
    """The host name of a ``Host`` header: port, IPv6 brackets and a final dot removed."""
    host = header.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


class AllowedHosts:
    """ASGI middleware answering 400 to requests whose ``Host`` is not an allowed name.

    A web page on another site can make a browser send requests to a local server by
    pointing its own name at 127.0.0.1 (DNS rebinding); such requests carry that other
    name in ``Host`` and are refused here.
    """

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = {host_name(name) for name in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        header = headers.get(b"host", b"").decode("latin-1")
        if host_name(header) in self.allowed:
            await self.app(scope, receive, send)
            return
        detail = (
            f"host {header[:100]!r} is not served here; start the server with "
            "--allowed-hosts NAME to allow a host name"
        )
        body = ErrorResponse(error="invalid_host", detail=detail).model_dump()
        await JSONResponse(body, status_code=400)(scope, receive, send)


class AccessLog(HttpMiddleware):
    """ASGI middleware logging one line per HTTP request to :data:`ACCESS_LOG`."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 0
        size = 0

        async def counting_send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            client = scope.get("client")
            ACCESS_LOG.info(
                '%s "%s %s" %s %d %.3f s',
                client[0] if client else "-",
                scope["method"],
                scope["path"],
                status or "-",
                size,
                time.perf_counter() - start,
            )
