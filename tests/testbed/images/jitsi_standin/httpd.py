"""A tiny asyncio HTTP/1.1 server for the stand-in REST endpoints (jicofo, jvb).

One request per connection (``Connection: close``); enough for curl, requests and probes.
Kept dependency-free so the XMPP stand-ins need nothing but slixmpp.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


@dataclass
class Response:
    """What a handler returns."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: object, status: int = 200) -> Response:
        """A JSON response."""
        return cls(status, json.dumps(payload).encode(), "application/json")

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        """A plain-text response."""
        return cls(status, text.encode())


# (method, path, request body) -> response
Handler = Callable[[str, str, bytes], Awaitable[Response]]


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, app: Handler) -> None:
    """Read one request, call the app, write the response, close."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or "0")
        body = b""
        if 0 < length <= 1 << 20:
            body = await asyncio.wait_for(reader.readexactly(length), timeout=10)
        path = target.split("?", 1)[0]
        try:
            response = await app(method.upper(), path, body)
        except Exception as exc:  # a bug in a stand-in must not kill the server
            response = Response.text(f"internal error: {type(exc).__name__}\n", 500)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
        response = Response.text("bad request\n", 400)
        method = "GET"
    reason = _REASONS.get(response.status, "Status")
    out = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in response.headers.items()),
        "",
        "",
    ]
    try:
        writer.write("\r\n".join(out).encode("latin-1"))
        if method != "HEAD":
            writer.write(response.body)
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(host: str, port: int, app: Handler) -> asyncio.Server:
    """Start serving ``app`` on host:port."""
    return await asyncio.start_server(
        lambda r, w: _handle(r, w, app), host=host, port=port, reuse_address=True
    )
