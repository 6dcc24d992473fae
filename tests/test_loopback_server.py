"""`rotator.testing._http.LoopbackServer`: a client that hangs up mid-request prints no
traceback (issue 13, "Noise": ConnectionResetError tracebacks in test output)."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

from rotator.testing._http import JsonHandler, LoopbackServer


class _Handler(JsonHandler):
    def do_GET(self) -> None:
        self.send_json(200, {"ok": True})


def _reset_mid_request(url_port: int) -> None:
    """Send half a request, then close with RST (SO_LINGER 0): the server's read fails
    with ConnectionResetError."""
    s = socket.create_connection(("127.0.0.1", url_port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.05)  # the server is reading the headers now
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def _wait_idle(server: LoopbackServer, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with server._conns_lock:
            if not server._conns:
                return
        time.sleep(0.01)
    raise AssertionError("the server still holds the reset connection")


def test_a_client_that_resets_prints_no_traceback(capfd: Any) -> None:
    server = LoopbackServer("127.0.0.1", 0, _Handler).start_background("quiet-test")
    try:
        port = int(server.server_address[1])
        for _ in range(3):
            _reset_mid_request(port)
        _wait_idle(server)
        # Still serving, and nothing printed.
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        server.stop()
    _out, err = capfd.readouterr()
    assert "Traceback" not in err and "ConnectionResetError" not in err, err
