"""The trainer socket (docs/design.md §4): a Unix datagram server feeding `TrainStats`.

One thread, a tight non-blocking `recvmsg` loop that drains the queue and only sleeps in `select`
when it is empty; parsing happens on the same thread so nothing queues in Python. Datagrams are at
most 8 KiB; anything larger is truncated by the kernel and therefore malformed. SO_PASSCRED makes
the kernel attach each sender's credentials (SCM_CREDENTIALS: pid, uid, gid), which `Trust` checks
(about 0.8 µs more per datagram than a plain `recv`; the bytes are handed over undecoded).

The socket's directory is created 0700 or must already be safe: not a symlink, owned by the agent
(or root), writable by nobody else unless it is a root-owned sticky directory such as /tmp.

Linux bounds a Unix datagram socket's queue by `net.unix.max_dgram_qlen` (default 10 datagrams,
read when the socket is created), not by SO_RCVBUF: at 50,000 records/s that is 200 µs of slack,
less than one scheduler hiccup, and a non-blocking sender drops the rest. The agent raises it (never
lowers it) only when asked (`--raise-dgram-qlen`, which the Helm chart passes): the sysctl is per
network namespace and is not restored on exit, so a laptop's is left alone unless asked.
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
CRED_SIZE = 12  # struct ucred: pid, uid, gid


def dgram_qlen(sysctl: Path | None = None) -> int | None:
    """net.unix.max_dgram_qlen now, or None where it cannot be read."""
    sysctl = QLEN_SYSCTL if sysctl is None else sysctl
    try:
        return int(sysctl.read_text().strip())
    except (OSError, ValueError):
        return None


def check_dgram_qlen(minimum: int = MIN_QUEUE, sysctl: Path | None = None) -> int | None:
    """Log (without changing anything) when the queue limit is below `minimum`; the value in force."""
    current = dgram_qlen(sysctl)
    if current is not None and current < minimum:
        log.info(
            "net.unix.max_dgram_qlen is %d: bursts above ~%d records may be dropped by senders "
            "(left as it is; --raise-dgram-qlen raises it to %d for this network namespace)",
            current,
            current,
            minimum,
        )
    return current


def raise_dgram_qlen(minimum: int = MIN_QUEUE, sysctl: Path | None = None) -> int | None:
    """Raise net.unix.max_dgram_qlen to at least `minimum` if allowed; the value in force, or None.

    Only with `--raise-dgram-qlen`: it changes a host (network namespace) setting and is not restored.
    """
    current = dgram_qlen(sysctl)
    if current is None:
        return None
    if current >= minimum:
        return current
    try:
        (QLEN_SYSCTL if sysctl is None else sysctl).write_text(f"{minimum}\n")
    except OSError:
        log.warning(
            "net.unix.max_dgram_qlen is %d and cannot be raised here: bursts above ~%d records "
            "may be dropped by senders (set it to %d on the node or pod)",
            current,
            current,
            minimum,
        )
        return current
    log.warning(
        "raised net.unix.max_dgram_qlen from %d to %d for this network namespace (--raise-dgram-qlen); "
        "it stays raised after the agent exits",
        current,
        minimum,
    )
    return minimum


def _unsafe(directory: Path, st: os.stat_result, uid: int, gid: int) -> str | None:
    """Why `directory` may not hold the socket (another user could swap or capture it), or None.

    Group write is fine on the agent's own group (a user-private group, umask 002 on Debian/Ubuntu).
    """
    if stat.S_ISLNK(st.st_mode):
        return "is a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid not in (0, uid):
        return f"is owned by uid {st.st_uid}, not by the agent (uid {uid})"
    sticky_root = st.st_uid == 0 and st.st_mode & stat.S_ISVTX
    others = st.st_mode & 0o002 or (st.st_mode & 0o020 and st.st_gid != gid)
    if others and not sticky_root:
        return f"is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def secure_dir(directory: Path, uid: int | None = None, gid: int | None = None) -> None:
    """Create `directory` (each missing level 0755) or refuse an existing one another user controls.

    The socket's own directory and every ancestor not owned by root must be real directories owned
    by the agent and writable by nobody else (a root-owned sticky directory like /tmp is fine):
    otherwise another local user could pre-create it and capture the trainers' records.
    """
    uid = os.geteuid() if uid is None else uid
    gid = os.getegid() if gid is None else gid
    missing = []
    d = directory
    while not os.path.lexists(d):
        missing.append(d)
        d = d.parent
    for m in reversed(missing):
        try:
            os.mkdir(m, 0o755)
            # 0755, not 0700: trainers of other users must reach the socket (a root agent's
            # /run/gpulens); nobody but the agent can create, rename or bind anything inside it.
            os.chmod(m, 0o755)
        except FileExistsError:
            pass  # raced with someone: checked below like any existing directory
        except OSError as exc:
            raise GpulensError(f"cannot create the socket directory: {exc.strerror}", path=m) from None
    for d in (directory, *directory.parents):
        st = os.lstat(d)
        reason = _unsafe(d, st, uid, gid)
        if d != directory and st.st_uid == 0 and reason is None:
            break  # a root-owned ancestor nobody else may write in (/run, or sticky /tmp): no swap
        if reason is not None:
            raise GpulensError(
                f"{reason}; refusing to put the trainer socket there (remove it, or pass --socket "
                "in a directory only the agent can write)",
                path=d,
            )


def _bind(path: Path, credentials: bool) -> socket.socket:
    """A datagram socket bound at `path`, replacing a stale socket file (never a regular file)."""
    secure_dir(path.parent)
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
    if credentials:  # every datagram carries its sender (trust pid/uid); off: plain recv, faster
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise GpulensError(f"cannot bind the trainer socket: {exc.strerror}", path=path) from None
    # Trainers run as other users; what a record may map is decided by its sender's credentials.
    os.chmod(path, 0o666)
    return sock


class DatagramServer:
    """Receives datagrams at `path` and hands batches of (bytes, credentials) to `handle` on its own thread.

    `handle(datagrams, creds)`: `creds[i]` is the raw SCM_CREDENTIALS of `datagrams[i]` (b"" if none);
    `creds` is None when `credentials` is off (nothing checks them: `--trust off`).
    """

    def __init__(
        self,
        path: Path,
        handle: Callable[[list[bytes], list[bytes] | None], object],
        credentials: bool = True,
    ) -> None:
        self.path = path
        self._handle = handle
        self._credentials = credentials
        self._sock = _bind(path, credentials)
        self._sock.setblocking(False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpulens-socket", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        # Drain the kernel queue first (up to DRAIN datagrams: the queue is what overflows), then hand
        # the datagrams over in BATCH-sized calls (one lock acquisition each); sleep in select only
        # when the queue is empty.
        recv, recvmsg, handle, stop, sock = (
            self._sock.recv,
            self._sock.recvmsg,
            self._handle,
            self._stop,
            self._sock,
        )
        size = MAX_DATAGRAM + 1  # one byte more than allowed: an oversized datagram shows as too long
        space = socket.CMSG_SPACE(CRED_SIZE)
        with_creds = self._credentials
        while not stop.is_set():
            pending: list[bytes] = []
            creds: list[bytes] = []
            try:
                if with_creds:
                    while len(pending) < DRAIN:
                        data, anc, _flags, _addr = recvmsg(size, space)
                        pending.append(data)
                        creds.append(anc[0][2] if anc else b"")
                else:
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
                handle(pending[i : i + BATCH], creds[i : i + BATCH] if with_creds else None)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
