"""The one HTTP server class (gpulens/httpserver.py) against slow and greedy clients.

A review held 520 connections open by sending one header line every 3 s: each read finished inside
the 10 s idle timeout, so every slot stayed taken and /metrics (and the remediation receiver's
/healthz) timed out for as long as the trickle went on.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from gpulens.httpserver import GpulensHTTPServer


class Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


class ShortDeadline(GpulensHTTPServer):
    connection_deadline = 1.0


class TwoPerClient(GpulensHTTPServer):
    max_per_client = 2
    connection_timeout = 120.0  # neither the idle timeout nor the deadline may close anything here
    connection_deadline = 120.0


def _serve(cls: type[GpulensHTTPServer]) -> Iterator[GpulensHTTPServer]:
    srv = cls(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def server() -> Iterator[GpulensHTTPServer]:
    yield from _serve(ShortDeadline)


@pytest.fixture
def capped() -> Iterator[GpulensHTTPServer]:
    yield from _serve(TwoPerClient)


def _connect(srv: GpulensHTTPServer) -> socket.socket:
    return socket.create_connection(srv.server_address[:2], timeout=30)


def _closed(conn: socket.socket, wait: float = 20.0) -> bool:
    """True when the server closed the connection within `wait` s; False when it is still open."""
    conn.settimeout(wait)
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_trickling_client_is_cut_at_the_connection_deadline(server: GpulensHTTPServer) -> None:
    conn = _connect(server)
    conn.sendall(b"GET / HTTP/1.1\r\n")
    conn.settimeout(0.2)
    closed = False
    for _ in range(150):  # up to ~30 s of trickling, one header line every 0.2 s: never idle
        try:
            conn.sendall(b"X-Slow: y\r\n")
        except OSError:
            closed = True
            break
        try:
            if conn.recv(1) == b"":
                closed = True
                break
        except TimeoutError:
            continue
        except ConnectionResetError:
            closed = True
            break
    conn.close()
    assert closed


def test_one_client_cannot_take_every_slot(capped: GpulensHTTPServer) -> None:
    held = [_connect(capped), _connect(capped)]
    for conn in held:
        conn.sendall(b"GET / HTTP/1.1\r\n")  # a request begun, never finished: the slot stays taken
    deadline = time.monotonic() + 30
    while capped._per_client.get("127.0.0.1", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # until the accept loop has taken both
    third = _connect(capped)
    assert _closed(third)  # closed rather than parked beside the other two
    assert not _closed(held[0], wait=2.0)  # the first two are still served (their requests still open)
    for conn in held:
        conn.close()
    while time.monotonic() < deadline + 30:  # once the two are gone, the client is served again
        again = _connect(capped)
        again.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = again.recv(64)
        again.close()
        if reply.startswith(b"HTTP/1.0 200") or reply.startswith(b"HTTP/1.1 200"):
            return
        time.sleep(0.1)
    pytest.fail("the client was never served again after closing its connections")
