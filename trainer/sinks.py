"""Where StepMonitor's records go: the agent socket (SPEC §4), a JSONL file, or its own /metrics.

A record is a SPEC §4 datagram object (`kind` "step" or "anomaly"), a flat dict of JSON scalars in
which non-finite numbers are already `None` (strict JSON: `NaN` is not a JSON token). No sink ever
blocks or raises into the training loop for a missing or slow reader: it drops and counts.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from gpulens.errors import GpulensError

log = logging.getLogger(__name__)

MAX_DATAGRAM = 8192  # bytes (SPEC §4)
Record = Mapping[str, Any]
TRAIN_LABELS = ("node", "job_id", "team", "rank", "gpu")


# One encoder for every record: json.dumps() with options builds a new encoder per call (~2 µs).
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def encode(record: Record) -> str:
    """One record as compact, strict JSON."""
    return _ENCODER.encode(record)


def encode_with_prefix(prefix: str, fields: Record) -> str:
    """`prefix` (an encoded object without its closing brace and a trailing comma) extended by `fields`.

    The fields every record of a process shares are encoded once; only the rest is encoded per step.
    """
    return prefix + _ENCODER.encode(fields)[1:]


def prefix_of(shared: Record) -> str:
    return _ENCODER.encode(shared)[:-1] + ","


class Sink(Protocol):
    """`emit` gets each record twice over: as a dict, and already encoded as one line of JSON."""

    dropped: int

    def emit(self, record: Record, line: str) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class SocketSink:
    """Unix datagrams to the agent, non-blocking: no agent, or a full buffer, drops the record and counts it."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.sent = 0
        self.dropped = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def emit(self, record: Record, line: str) -> None:
        data = line.encode()
        if len(data) > MAX_DATAGRAM:
            self.dropped += 1
            return
        try:
            self._sock.sendto(data, self.path)
        except OSError:  # no agent (ENOENT, ECONNREFUSED), full buffer (EAGAIN): SPEC §4 says drop and count
            self.dropped += 1
        else:
            self.sent += 1

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
            self._file: IO[str] | None = self.path.open("a", encoding="utf-8", buffering=1 << 16)
        except OSError as exc:
            raise GpulensError(f"cannot append the training log ({exc.strerror}); choose another log path",
                               path=self.path) from None

    def emit(self, record: Record, line: str) -> None:
        if self._file is None:
            self.dropped += 1
            return
        try:
            self._file.write(line + "\n")
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
        self._step_seconds = Histogram("gpulens_train_step_seconds", "Training step wall time.", TRAIN_LABELS,
                                       registry=reg)
        self._steps = Counter("gpulens_train_steps", "Training steps completed.", TRAIN_LABELS, registry=reg)
        self._tokens = Counter("gpulens_train_tokens", "Tokens processed.", TRAIN_LABELS, registry=reg)
        self._loss = Gauge("gpulens_train_loss", "Latest training loss.", TRAIN_LABELS, registry=reg)
        self._mfu = Gauge("gpulens_train_mfu_ratio", "Model FLOPs utilization of the latest step.", TRAIN_LABELS,
                          registry=reg)
        self._last = Gauge("gpulens_train_last_step_timestamp_seconds", "Unix time of the latest step.",
                           TRAIN_LABELS, registry=reg)
        self._anomalies = Counter("gpulens_train_loss_anomalies", "Loss anomalies, one per episode.",
                                  (*TRAIN_LABELS, "kind"), registry=reg)
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=reg)
        except OSError as exc:
            raise GpulensError(f"cannot serve /metrics on {host}:{port} ({exc.strerror}); choose another port",
                               field="prometheus_port") from None
        self.port = port

    def emit(self, record: Record, line: str) -> None:
        labels = (self.node, str(record["job_id"]), str(record["team"]), str(record["rank"]),
                  str(record.get("gpu", "")))
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
