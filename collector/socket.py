"""The trainer socket (SPEC §4): a Unix datagram server feeding `TrainStats`.

One thread, a tight non-blocking `recv_into` loop that drains the queue and only sleeps in
`select` when it is empty; parsing happens on the same thread so nothing queues in Python.
Datagrams are at most 8 KiB; anything larger is truncated by the kernel and therefore malformed.

Linux bounds a Unix datagram socket's queue by `net.unix.max_dgram_qlen` (default 10 datagrams,
read when the socket is created), not by SO_RCVBUF: at 50,000 records/s that is 200 µs of slack,
less than one scheduler hiccup, and a non-blocking sender drops the rest. The agent therefore
raises it (never lowers it) before binding when it may (`raise_dgram_qlen`); the sysctl is
per network namespace (a pod can set it through securityContext.sysctls).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from gpulens.errors import GpulensError
from gpulens.wire import MAX_DATAGRAM

log = logging.getLogger(__name__)

BATCH = 256  # datagrams handed over at once (one lock acquisition in TrainStats)
DRAIN = 8192  # datagrams read off the kernel queue before parsing any of them
RCVBUF_BYTES = 16 * 1024 * 1024  # the kernel caps it at net.core.rmem_max (SO_RCVBUFFORCE as root)
MIN_QUEUE = 8192  # datagrams: ~160 ms of slack at 50k records/s
QLEN_SYSCTL = Path("/proc/sys/net/unix/max_dgram_qlen")


def raise_dgram_qlen(minimum: int = MIN_QUEUE, sysctl: Path = QLEN_SYSCTL) -> int | None:
    """Raise net.unix.max_dgram_qlen to at least `minimum` if allowed; the value in force, or None."""
    try:
        current = int(sysctl.read_text().strip())
    except (OSError, ValueError):
        return None
    if current >= minimum:
        return current
    try:
        sysctl.write_text(f"{minimum}\n")
    except OSError:
        log.warning(
            "net.unix.max_dgram_qlen is %d and cannot be raised here: bursts above ~%d records "
            "may be dropped by senders (set it to %d on the node or pod)",
            current,
            current,
            minimum,
        )
        return current
    log.info("raised net.unix.max_dgram_qlen from %d to %d for the trainer socket", current, minimum)
    return minimum


def _bind(path: Path) -> socket.socket:
    """A datagram socket bound at `path`, replacing a stale socket file (never a regular file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise GpulensError("exists and is not a socket; remove it or pass another --socket", path=path)
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if opt is None:
            continue
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, opt, RCVBUF_BYTES)
            break
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise GpulensError(f"cannot bind the trainer socket: {exc.strerror}", path=path) from None
    os.chmod(path, 0o666)  # trainers run as other users; the socket only accepts metrics
    return sock


class DatagramServer:
    """Receives datagrams at `path` and hands batches of their bytes to `handle` on its own thread."""

    def __init__(self, path: Path, handle: Callable[[list[bytes]], object]) -> None:
        self.path = path
        self._handle = handle
        self._sock = _bind(path)
        self._sock.setblocking(False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpulens-socket", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        # Drain the kernel queue first (plain recv calls, up to DRAIN datagrams: the queue is what
        # overflows), then hand the datagrams over in BATCH-sized calls (one lock acquisition each);
        # sleep in select only when the queue is empty.
        recv, handle, stop, sock = self._sock.recv, self._handle, self._stop, self._sock
        size = MAX_DATAGRAM + 1  # one byte more than allowed: an oversized datagram shows as too long
        while not stop.is_set():
            pending: list[bytes] = []
            try:
                while len(pending) < DRAIN:
                    pending.append(recv(size))
            except BlockingIOError:
                if not pending:
                    select.select([sock], [], [], 0.2)
                    continue
            except OSError as exc:
                if not stop.is_set():
                    log.warning("trainer socket: %s", exc)
                return
            for i in range(0, len(pending), BATCH):
                handle(pending[i : i + BATCH])

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
