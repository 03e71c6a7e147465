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
    - `connection_deadline`: seconds a connection may last in all, however it trickles (a client
      sending one header line every few seconds never trips the idle timeout); then it is shut down.
    - `max_connections`: connections served at once; beyond it, new ones wait in the backlog instead
      of each getting a thread.
    - `max_per_client`: connections one client address may hold at once; more are closed at once,
      so one slow client cannot take every slot from the scraper or Alertmanager.
    - A client that disconnects or times out is a debug line, not a traceback; any other error in a
      handler is one logged error with its traceback (through `logging`, not printed to stderr).
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    connection_timeout: float | None = 10.0
    connection_deadline = 30.0
    max_connections = 512
    max_per_client = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._per_client: dict[str, int] = {}
        self._clients_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        host = _host(client_address)
        with self._clients_lock:
            held = self._per_client.get(host, 0)
            if held >= self.max_per_client:
                logger.debug("client %s holds %d connections: refused", host, held)
                return False
            self._per_client[host] = held + 1
        return True

    def _left(self, client_address: Any) -> None:
        host = _host(client_address)
        with self._clients_lock:
            held = self._per_client.get(host, 1) - 1
            if held > 0:
                self._per_client[host] = held
            else:
                self._per_client.pop(host, None)

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
            self._left(client_address)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        deadline = threading.Timer(self.connection_deadline, _shut, (request,))
        deadline.daemon = True
        deadline.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            deadline.cancel()
            self._slots.release()
            self._left(client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            logger.debug("client %s went away: %s", _peer(client_address), error.__class__.__name__)
            return
        logger.error("error while serving %s", _peer(client_address), exc_info=True)


def _shut(conn: socket.socket) -> None:
    """End a connection past its deadline: the handler's blocked read returns and it finishes."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


def _host(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
