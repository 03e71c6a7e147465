"""The threading HTTP server gpulens' own endpoints run on (the remediation receiver; fit for the agent).

`http.server.ThreadingHTTPServer` as the standard library ships it listens with a backlog of 5, never
times out a connection, starts a thread for every connection however many there are, and prints a
traceback to stderr for every client that hangs up early. Under a few hundred idle or half-open
connections that means refused connects, a thread parked for ever per connection, and a log full of
BrokenPipe tracebacks. `GpulensHTTPServer` keeps the same interface (a drop-in subclass) and changes
only those four things; each is a class attribute a subclass may override.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)


class GpulensHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a real listen backlog, connection timeouts, a connection cap, quiet hang-ups.

    - `request_queue_size`: the listen backlog (the kernel caps it at net.core.somaxconn).
    - `connection_timeout`: seconds a connection may sit idle in any one read or write before it is
      closed (a client that connects and sends nothing, or stops reading).
    - `max_connections`: connections served at once; beyond it, new ones wait in the backlog instead
      of each getting a thread.
    - A client that disconnects or times out is a debug line, not a traceback; any other error in a
      handler is one logged error with its traceback (through `logging`, not printed to stderr).
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    connection_timeout: float | None = 10.0
    max_connections = 512

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(self.max_connections)
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        conn.settimeout(self.connection_timeout)
        return conn, address

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()  # at the cap: the accept loop waits, the kernel backlog holds the rest
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            logger.debug("client %s went away: %s", _peer(client_address), error.__class__.__name__)
            return
        logger.error("error while serving %s", _peer(client_address), exc_info=True)


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
