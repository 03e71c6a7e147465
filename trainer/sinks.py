"""Where StepMonitor's records go: the agent socket (SPEC §4), a JSONL file, or its own /metrics.

A record is a SPEC §4 datagram object (`kind` "step" or "anomaly"), a flat dict of JSON scalars in
which non-finite numbers are already `None` (strict JSON: `NaN` is not a JSON token). No sink ever
blocks or raises into the training loop for a missing or slow reader: it drops and counts.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import operator
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from gpulens.errors import GpulensError

try:  # a core dependency, but the trainer must also run where only torch is installed (a GPU image)
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised by the import test with orjson blocked
    _orjson = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

MAX_DATAGRAM = 8192  # bytes (SPEC §4)
SEND_BUFFER = 4 << 20  # bytes asked for the sender's SO_SNDBUF (the kernel caps it at net.core.wmem_max)
NO_AGENT_RETRY = 1.0  # seconds without a send attempt after "no agent": a failed sendto costs ~2-3 µs
Record = Mapping[str, Any]
Encoder = Callable[[Record, Record], bytes]
TRAIN_LABELS = ("node", "job_id", "team", "rank", "gpu")


def _number(value: Any) -> Any:
    """`default` for values neither encoder knows (NumPy scalars, 0-d tensors): an int or a finite float or None."""
    try:
        return operator.index(value)  # integers (NumPy, integer tensors) stay integers
    except TypeError:
        pass
    number = float(
        value
    )  # TypeError/ValueError for anything that is not a number: the caller drops the record
    return number if math.isfinite(number) else None


# One encoder for every record: json.dumps() with options builds a new encoder per call (~2 µs).
# ensure_ascii=False: UTF-8 on the wire, as orjson writes it.
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False, default=_number)


def _json(record: Record) -> bytes:
    try:
        return _JSON.encode(record).encode()
    except ValueError as exc:  # NaN/Inf: not JSON tokens; SPEC §4 sends them as null, as orjson does
        if isinstance(exc, UnicodeError):
            raise
        return _JSON.encode(
            {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        ).encode()


def _orjson_encode(record: Record) -> bytes:
    # orjson writes NaN and ±Inf as null, keeps key order, and is ~10x faster than json (µs per record)
    return _orjson.dumps(record, default=_number)  # type: ignore[union-attr]


def encode(record: Record) -> bytes:
    """One record as compact, strict JSON in UTF-8 (no newline); non-finite numbers become null.

    orjson when it is importable, else the standard library; the two write the same JSON values
    (they differ only in the spelling of some exponents: `2.5e-8` against `2.5e-08`).
    """
    return _orjson_encode(record) if _orjson is not None else _json(record)


def step_encoder(shared: Record) -> Encoder:
    """An encoder of `(record, fields)` -> bytes for records that are `shared` extended by `fields`.

    With the standard library, `shared` (the fields every record of a process repeats) is encoded
    once and only `fields` per record (~25 % less time); orjson encodes the whole record faster than
    that join, so it gets the record as is.
    """
    if _orjson is not None:
        return lambda record, fields: _orjson_encode(record)
    prefix = _json(shared)[:-1] + b","
    return lambda record, fields: prefix + _json(fields)[1:]


class Sink(Protocol):
    """`emit` gets each record twice over: as a dict, and already encoded (`encode`: UTF-8 JSON, no newline)."""

    dropped: int

    def emit(self, record: Record, line: bytes) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class SocketSink:
    """Unix datagrams to the agent, non-blocking: no agent, or a full buffer, drops the record and counts it.

    Every datagram waiting in the agent's queue is charged to this socket's send buffer, so the
    default (net.core.wmem_default, 208 KiB: ~330 records) would drop a burst the agent's queue
    could take; it asks for `SEND_BUFFER` (best effort, capped by net.core.wmem_max). After "no
    agent" (ENOENT, ECONNREFUSED) it drops without trying for `NO_AGENT_RETRY` seconds.
    """

    def __init__(self, path: str | Path, send_buffer: int = SEND_BUFFER) -> None:
        self.path = str(path)
        self.sent = 0
        self.dropped = 0
        self._retry_at = 0.0  # monotonic time before which there is known to be no agent
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
            self._sock.sendto(line, self.path)
        except (
            OSError
        ) as exc:  # no agent (ENOENT, ECONNREFUSED), full buffer (EAGAIN): SPEC §4 says drop and count
            self.dropped += 1
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
                self._retry_at = time.monotonic() + NO_AGENT_RETRY
        else:
            self.sent += 1
            self._retry_at = 0.0

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._sock.close()


class JsonlSink:
    """One record per line, appended; buffered, flushed on anomalies and at close (`gpulens ingest runs` reads it)."""

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
    """This process's own /metrics on 127.0.0.1 (for a node without an agent); SPEC §3 `gpulens_train_*` names.

    prometheus_client is imported only here, so StepMonitor works without it unless this is asked for.
    """

    def __init__(self, port: int, node: str, host: str = "127.0.0.1") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

        self.dropped = 0
        self.node = node
        self.registry = CollectorRegistry(auto_describe=False)
        reg = self.registry
        self._step_seconds = Histogram(
            "gpulens_train_step_seconds", "Training step wall time.", TRAIN_LABELS, registry=reg
        )
        self._steps = Counter("gpulens_train_steps", "Training steps completed.", TRAIN_LABELS, registry=reg)
        self._tokens = Counter("gpulens_train_tokens", "Tokens processed.", TRAIN_LABELS, registry=reg)
        self._loss = Gauge("gpulens_train_loss", "Latest training loss.", TRAIN_LABELS, registry=reg)
        self._mfu = Gauge(
            "gpulens_train_mfu_ratio",
            "Model FLOPs utilization of the latest step.",
            TRAIN_LABELS,
            registry=reg,
        )
        self._last = Gauge(
            "gpulens_train_last_step_timestamp_seconds",
            "Unix time of the latest step.",
            TRAIN_LABELS,
            registry=reg,
        )
        self._anomalies = Counter(
            "gpulens_train_loss_anomalies",
            "Loss anomalies, one per episode.",
            (*TRAIN_LABELS, "kind"),
            registry=reg,
        )
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=reg)
        except OSError as exc:
            raise GpulensError(
                f"cannot serve /metrics on {host}:{port} ({exc.strerror}); choose another port",
                field="prometheus_port",
            ) from None
        self.port = port

    def emit(self, record: Record, line: bytes) -> None:
        labels = (
            self.node,
            str(record["job_id"]),
            str(record["team"]),
            str(record["rank"]),
            str(record.get("gpu", "")),
        )
        if record["kind"] == "anomaly":
            self._anomalies.labels(*labels, str(record["anomaly"])).inc()
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
