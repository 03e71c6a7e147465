"""The trainer record (docs/design.md §4): the one definition that trainer, collector and attribution share.

A record is a flat JSON object, one per Unix datagram (at most `MAX_DATAGRAM` bytes) or one per line
of the trainer's JSONL log. This module owns what a record is: its kinds, the anomaly kinds, the
phase names, the size limit, how one is encoded (strict JSON; non-finite numbers become `null`) and
how one is decoded and classified. The agent's hot path parses datagrams itself for speed, but from
these constants; files (`gpulens runs check`, `gpulens ingest runs`, `gpulens runs goodput`) are read
through `read_records`, so every command agrees on what a file holds.

Nothing here imports torch, numpy or any component: the trainer imports it inside a training image.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Literal

from gpulens.errors import GpulensError

try:  # orjson parses a record in ~1 µs against json's ~6 µs and encodes ~10x faster
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised by the import test with orjson blocked
    _orjson = None  # type: ignore[assignment]

VERSION: Final = 1
MAX_DATAGRAM: Final = 8192  # bytes, one datagram or one JSONL line

STEP: Final = "step"
ANOMALY: Final = "anomaly"
RUN: Final = "run"
PHASE: Final = "phase"
KINDS: Final = (STEP, ANOMALY, RUN, PHASE)

AnomalyKind = Literal["nan", "spike", "divergence"]
ANOMALY_KINDS: Final[tuple[AnomalyKind, ...]] = ("nan", "spike", "divergence")

RUN_EVENTS: Final = ("start", "end")
# Named phases (docs/design.md §8); any other name is accepted on the wire and counted as `other`.
PHASES: Final = ("init", "checkpoint_load", "checkpoint_save", "data_wait", "eval")
OTHER_PHASE: Final = "other"

Record = Mapping[str, Any]
Encoder = Callable[[Record, Record], bytes]


class WireError(ValueError):
    """A datagram or line that is not a record: the agent counts it malformed, a file read names its row."""


def phase_bucket(name: object) -> str:
    """The goodput bucket a phase name counts in: one of `PHASES`, else `other`."""
    return name if isinstance(name, str) and name in PHASES else OTHER_PHASE


def is_anomaly_kind(value: object) -> bool:
    return isinstance(value, str) and value in ANOMALY_KINDS


# ---- encoding -------------------------------------------------------------------------------------


def _number(value: Any) -> Any:
    """`default` for values neither encoder knows (NumPy scalars, 0-d tensors): int, finite float or None."""
    try:
        return operator.index(value)  # integers (NumPy, integer tensors) stay integers
    except TypeError:
        pass
    number = float(value)  # TypeError/ValueError for anything that is not a number: the record is dropped
    return number if math.isfinite(number) else None


# One encoder for every record: json.dumps() with options builds a new encoder per call (~2 µs).
# ensure_ascii=False: UTF-8 on the wire, as orjson writes it.
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False, default=_number)


def _json(record: Record) -> bytes:
    try:
        return _JSON.encode(record).encode()
    except ValueError as exc:  # NaN/Inf are not JSON tokens: sent as null, as orjson writes them
        if isinstance(exc, UnicodeError):
            raise
        finite = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        return _JSON.encode(finite).encode()


def _orjson_encode(record: Record) -> bytes:
    return _orjson.dumps(record, default=_number)  # type: ignore[union-attr]


def encode(record: Record) -> bytes:
    """One record as compact, strict JSON in UTF-8 (no newline); non-finite numbers become null.

    orjson when it is importable, else the standard library; both write the same JSON values (they
    differ only in the spelling of some exponents: `2.5e-8` against `2.5e-08`).
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


# ---- decoding -------------------------------------------------------------------------------------

loads: Callable[[bytes | str], Any] = _orjson.loads if _orjson is not None else json.loads
DECODE_ERRORS: Final = (
    (_orjson.JSONDecodeError, ValueError, RecursionError)
    if _orjson is not None
    else (json.JSONDecodeError, ValueError, RecursionError)
)


def decode(data: bytes | str) -> dict[str, Any]:
    """One datagram or line -> its record; `WireError` when it is not a record.

    A record is a JSON object of at most `MAX_DATAGRAM` bytes with a `kind` string. A `v` other than
    1 is refused (a future version may change meanings); an absent `v` is accepted in files, where
    hand-made logs omit it. Unknown kinds pass (the caller skips them): senders may be newer.
    """
    if len(data) > MAX_DATAGRAM:
        raise WireError(f"over {MAX_DATAGRAM} bytes")
    try:
        record = loads(data)
    except DECODE_ERRORS as exc:
        raise WireError(f"not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise WireError("not a JSON object (a trainer record is one object a line)")
    if record.get("v", VERSION) != VERSION:
        raise WireError(f"version {record.get('v')!r} is not {VERSION}")
    if not isinstance(record.get("kind"), str):
        raise WireError(f"no kind (a trainer record's kind is one of {', '.join(KINDS)})")
    return record


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row, record) for every non-blank line of a trainer JSONL log; rows count from 1.

    A line that is not a record raises GpulensError naming the file and row: every command that
    reads a log (runs check, runs goodput, ingest runs) refuses the same lines.
    """
    with path.open("rb") as handle:
        for row, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield row, decode(line.rstrip(b"\r\n"))
            except WireError as exc:
                raise GpulensError(str(exc), path=path, row=row) from None


def looks_like_jsonl(path: Path) -> bool:
    """True when the first non-blank line opens a JSON object (a trainer log), else False."""
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                return line.lstrip().startswith(b"{")
    return False
