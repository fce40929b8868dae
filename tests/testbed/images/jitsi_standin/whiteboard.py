"""STAND-IN excalidraw-backend (jitsi/excalidraw-backend:2026.3.0) for tests: socket.io on :80.

Behaves like the real Node socket.io v4 backend where the product can observe it:
- only the websocket transport is accepted (a polling handshake is refused);
- only the default namespace "/" connects; every other namespace is refused with
  "Invalid namespace", which is what a client sees when a URL path leaks into the namespace
  (e.g. a collab URL with a path);
- ``GET /`` answers "Excalidraw backend is up :)";
- a room relay: ``join-room`` (first-in-room / new-user / room-user-change),
  ``server-broadcast`` / ``server-volatile-broadcast`` -> ``client-broadcast`` to the others.
"""

from __future__ import annotations

from typing import Any

import socketio  # type: ignore[import-untyped]
import uvicorn
from socketio.exceptions import (  # type: ignore[import-untyped]
    ConnectionRefusedError as SocketIORefused,
)

from jitsi_standin.common import ALL_INTERFACES, log, release

COMPONENT = "whiteboard"

sio = socketio.AsyncServer(
    async_mode="asgi",
    transports=["websocket"],
    namespaces="*",
    cors_allowed_origins="*",
    logger=False,
    engineio_logger=False,
)


async def connect(namespace: str, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    """Accept "/" only, like a socket.io v4 server with no other namespace registered."""
    del environ, auth
    if namespace != "/":
        log(COMPONENT, f"refused namespace {namespace!r} for {sid}")
        raise SocketIORefused("Invalid namespace")
    log(COMPONENT, f"connected {sid}")


async def join_room(namespace: str, sid: str, room: str) -> None:
    """Join a drawing room and tell everybody who is in it."""
    await sio.enter_room(sid, room, namespace=namespace)
    members = [s for s, _ in sio.manager.get_participants(namespace, room)]
    if len(members) <= 1:
        await sio.emit("first-in-room", to=sid, namespace=namespace)
    else:
        await sio.emit("new-user", sid, room=room, skip_sid=sid, namespace=namespace)
    await sio.emit("room-user-change", members, room=room, namespace=namespace)


async def server_broadcast(namespace: str, sid: str, room: str, data: Any, iv: Any = None) -> None:
    """Relay encrypted scene data to the other members of the room."""
    await sio.emit("client-broadcast", (data, iv), room=room, skip_sid=sid, namespace=namespace)


async def server_volatile(namespace: str, sid: str, room: str, data: Any, iv: Any = None) -> None:
    """Relay pointer updates (volatile in the real backend)."""
    await sio.emit("client-broadcast", (data, iv), room=room, skip_sid=sid, namespace=namespace)


async def disconnect(namespace: str, sid: str, reason: Any = None) -> None:
    """Log departures."""
    del namespace, reason
    log(COMPONENT, f"disconnected {sid}")


async def root_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Everything that is not /socket.io/: the backend's status page."""
    del receive
    if scope["type"] != "http":
        return
    found = scope.get("path", "/") == "/"
    body = b"Excalidraw backend is up :)" if found else b"Cannot GET " + scope["path"].encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200 if found else 404,
            "headers": [(b"content-type", b"text/html; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})


# Registered for every namespace ("*"): handlers get the namespace as first argument.
for _event, _handler in (
    ("connect", connect),
    ("join-room", join_room),
    ("server-broadcast", server_broadcast),
    ("server-volatile-broadcast", server_volatile),
    ("disconnect", disconnect),
):
    sio.on(_event, _handler, namespace="*")

app = socketio.ASGIApp(sio, other_asgi_app=root_app, socketio_path="socket.io")


def main() -> None:
    """Serve on port 80."""
    log(COMPONENT, f"excalidraw-backend stand-in {release()} listening on :80")
    uvicorn.run(
        app, host=ALL_INTERFACES, port=80, ws="wsproto", log_level="warning", lifespan="off"
    )


if __name__ == "__main__":
    main()
