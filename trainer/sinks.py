"""Where StepMonitor's records go: the agent socket (docs/design.md §4), a JSONL file, or its own /metrics.

A record is a docs/design.md §4 datagram object (`kind` "step" or "anomaly"), a flat dict of JSON scalars in
which non-finite numbers are already `None` (strict JSON: `NaN` is not a JSON token). No sink ever
blocks or raises into the training loop for a missing or slow reader: it drops and counts.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from pathlib import Path
from typing import IO, Any, Protocol

from gpulens import metrics as M
from gpulens.errors import GpulensError
from gpulens.wire import ANOMALY, MAX_DATAGRAM, PHASE, STEP, Record, encode, phase_bucket, step_encoder

__all__ = ["JsonlSink", "PrometheusSink", "Record", "Sink", "SocketSink", "encode", "step_encoder"]

log = logging.getLogger(__name__)

SEND_BUFFER = 4 << 20  # bytes asked for the sender's SO_SNDBUF (the kernel caps it at net.core.wmem_max)
NO_AGENT_RETRY = 1.0  # seconds without a send attempt after "no agent": a failed sendto costs ~2-3 µs


class Sink(Protocol):
    """`emit` gets each record twice: as a dict, and already encoded (`encode`: UTF-8 JSON, no newline)."""

    dropped: int

    def emit(self, record: Record, line: bytes) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class SocketSink:
    """Unix datagrams to the agent, non-blocking: no agent, or a full buffer, drops the record and counts it.

    Every datagram waiting in the agent's queue is charged to this socket's send buffer, so the
    default (net.core.wmem_default, 208 KiB: ~330 records) would drop a burst the agent's queue
    could take; it asks for `SEND_BUFFER` (best effort, capped by net.core.wmem_max). After "no
    agent" (ENOENT, ECONNREFUSED) it drops without trying for `NO_AGENT_RETRY` seconds. The socket is
    connected to the agent's path: `send` costs about half a `sendto`, which looks the path up every
    time; an agent that restarts (a new socket at the same path) refuses the old connection, and the
    next attempt, after the retry delay, connects to the new one.
    """

    def __init__(self, path: str | Path, send_buffer: int = SEND_BUFFER) -> None:
        self.path = str(path)
        self.sent = 0
        self.dropped = 0
        self._retry_at = 0.0  # monotonic time before which there is known to be no agent
        self._connected = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        except OSError:  # a smaller buffer only means earlier drops under a burst
            pass
        self.send_buffer = self._sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF
        )  # as granted (Linux doubles it)

    def emit(self, record: Record, line: bytes) -> None:
        if len(line) > MAX_DATAGRAM or (self._retry_at and time.monotonic() < self._retry_at):
            self.dropped += 1
            return
        try:
            if not self._connected:
                self._sock.connect(self.path)  # a datagram connect only names the peer: it never waits
                self._connected = True
            self._sock.send(line)
        except OSError as exc:  # no agent (ENOENT, ECONNREFUSED), full buffer (EAGAIN): drop and count
            self.dropped += 1
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTCONN):
                self._connected = False
                self._retry_at = time.monotonic() + NO_AGENT_RETRY
        else:
            self.sent += 1
            self._retry_at = 0.0

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._sock.close()


class JsonlSink:
    """One record per line, appended; buffered, flushed after each reporting batch, on anomalies and at
    close (`gpulens ingest runs` reads it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.dropped = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[bytes] | None = self.path.open("ab", buffering=1 << 16)
        except OSError as exc:
            raise GpulensError(
                f"cannot append the training log ({exc.strerror}); choose another log path", path=self.path
            ) from None

    def emit(self, record: Record, line: bytes) -> None:
        if self._file is None:
            self.dropped += 1
            return
        try:
            self._file.write(line + b"\n")
        except OSError as exc:  # a full disk must not stop training; say so once and count the rest
            log.warning("gpulens: cannot write %s (%s); further records are dropped", self.path, exc)
            self._file = None
            self.dropped += 1

    def flush(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
            except OSError:
                self.dropped += 1

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None


class PrometheusSink:
    """This process's own /metrics on 127.0.0.1 (for a node without an agent), named from the catalog.

    The same families and help texts as the agent's (gpulens.metrics); prometheus_client is imported
    only here, so StepMonitor works without it unless this is asked for.
    """

    def __init__(self, port: int, node: str, host: str = "127.0.0.1") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

        self.dropped = 0
        self.node = node
        self.registry = CollectorRegistry(auto_describe=False)
        kinds = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}

        def family(spec: M.MetricSpec) -> Any:
            # prometheus_client appends `_total` to a counter's name itself
            name = spec.name.removesuffix("_total") if spec.type == "counter" else spec.name
            return kinds[spec.type](name, spec.help, spec.labels, registry=self.registry)

        self._step_seconds = family(M.TRAIN_STEP_SECONDS)
        self._steps = family(M.TRAIN_STEPS)
        self._tokens = family(M.TRAIN_TOKENS)
        self._loss = family(M.TRAIN_LOSS)
        self._mfu = family(M.TRAIN_MFU)
        self._last = family(M.TRAIN_LAST_STEP)
        self._anomalies = family(M.TRAIN_ANOMALIES)
        self._attempt = family(M.TRAIN_ATTEMPT)
        self._phase_seconds = family(M.TRAIN_PHASE_SECONDS)
        self._gpu = ""  # a phase or run record names no GPU: the one of this process's steps
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise GpulensError(
                f"cannot serve /metrics on {host}:{port} ({exc.strerror}); choose another port",
                field="prometheus_port",
            ) from None
        self.port = port

    def emit(self, record: Record, line: bytes) -> None:
        if "gpu" in record:
            self._gpu = str(record["gpu"])
        labels = (self.node, str(record["job_id"]), str(record["team"]), str(record["rank"]), self._gpu)
        kind = record["kind"]
        if "attempt" in record:
            self._attempt.labels(*labels).set(record["attempt"])
        if kind == ANOMALY:
            self._anomalies.labels(*labels, str(record["anomaly"])).inc()
        if kind == PHASE:
            seconds = float(record["end"]) - float(record["start"])
            self._phase_seconds.labels(*labels, phase_bucket(record["phase"])).inc(max(seconds, 0.0))
        if kind != STEP:
            return
        self._steps.labels(*labels).inc()
        self._step_seconds.labels(*labels).observe(record["step_seconds"])
        self._last.labels(*labels).set(record["ts"])
        if record.get("tokens") is not None:
            self._tokens.labels(*labels).inc(record["tokens"])
        if record.get("mfu") is not None:
            self._mfu.labels(*labels).set(record["mfu"])
        if "loss" in record:
            self._loss.labels(*labels).set(float("nan") if record["loss"] is None else record["loss"])

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
