"""verify.hostside: HTTP over an SSH channel keeps the body although http.client closes early,
and testinfra modules run through the Runner."""

from __future__ import annotations

import http.client
import io

from jitsi_ops.runner import RecordingRunner
from jitsi_ops.verify.hostside import _ChannelSocket, _exchange, infra_host

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 35\r\n"
    b"Connection: close\r\n\r\n"
    b'{"bridge_selector": {"n": 1}}\n     '
)


class FakeChannel:
    """Like a paramiko Channel: data not yet read is lost once the channel is closed."""

    def __init__(self, response: bytes) -> None:
        self.sent = b""
        self.closed = False
        self.response = io.BytesIO(response)

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def settimeout(self, timeout: float | None) -> None:
        del timeout

    def close(self) -> None:
        self.closed = True

    def makefile(self, mode: str) -> ChannelFile:
        assert "r" in mode, mode
        return ChannelFile(self)


class ChannelFile(io.RawIOBase):
    """Like paramiko's ChannelFile: closing it leaves the channel open; reads may be short."""

    def __init__(self, channel: FakeChannel) -> None:
        super().__init__()
        self.channel = channel

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.channel.closed:
            return 0
        # One byte at a time, as if the body were still on its way when headers were parsed.
        data = self.channel.response.read(1)
        buffer[: len(data)] = data
        return len(data)


def test_body_survives_http_client_closing_its_socket_early() -> None:
    channel = FakeChannel(RESPONSE)
    conn = http.client.HTTPConnection("127.0.0.1", 8888, timeout=5)
    conn.sock = _ChannelSocket(channel)
    answer = _exchange(conn, "/stats")
    assert (answer.status, answer.body) == (200, '{"bridge_selector": {"n": 1}}\n     '), answer
    assert channel.sent.startswith(b"GET /stats HTTP/1.1\r\n"), channel.sent
    assert b"Connection: close" in channel.sent, channel.sent
    assert not channel.closed, "the caller, not http.client, closes the channel"


def test_testinfra_modules_run_through_the_runner() -> None:
    runner = RecordingRunner(
        responses={
            ("sh", "-c", "uname -s"): (0, "Linux\n", ""),
            ("sh", "-c", "test -f /srv/s/.env"): (0, "", ""),
            ("sh", "-c", "stat -Lc %a /srv/s/.env"): (0, "600\n", ""),
        }
    )
    file = infra_host(runner, 5.0).file("/srv/s/.env")
    assert (file.is_file, file.mode) == (True, 0o600)
    assert ("sh", "-c", "stat -Lc %a /srv/s/.env") in runner.calls, runner.calls
