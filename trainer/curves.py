"""Loss curves from files, for the offline detector (`gpulens runs check`, docs/design.md §2 and §7).

Every format `gpulens.runlogs` detects (docs/trainer.md, "Accepted log formats"): gpulens' CSV with a
header holding at least `step` and `loss` (other columns, such as `job_id,team,ts`, are ignored), the
trainer's JSONL (docs/design.md §4 records; the `step` records that carry a `loss` key, where `null`
is a non-finite loss), and the logs researchers already have: llm.c and modded-nanogpt text logs,
Hugging Face `trainer_state.json`, Lightning `metrics.csv`, W&B CSV exports and TensorBoard event
files. An empty loss cell is a step without a loss (a skipped iteration) and is left out; `nan`/`inf`
are non-finite losses. Bad input raises GpulensError naming the file, row and column; a file in no
accepted format gets one line listing them.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gpulens import runlogs
from gpulens.errors import GpulensError
from gpulens.wire import STEP, read_records

Curve = list[tuple[int, float]]


def read_curve(path: Path) -> Curve:
    """The (step, loss) points of one run, in file order."""
    fmt = runlogs.detect_format(path)
    if fmt == runlogs.JSONL:
        return _jsonl(path)
    if fmt == runlogs.CSV:
        try:
            with path.open(encoding="utf-8", newline="") as handle:
                return _csv(path, handle)
        except UnicodeDecodeError:
            raise runlogs.refuse(path, "not UTF-8 text") from None
    return [(p.step, p.loss) for p in runlogs.read_log(path, fmt).points if p.loss is not None]


def _number(path: Path, row: int, column: str, text: Any, kind: type) -> float:
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise GpulensError(f"{text!r} is not a number", path=path, row=row, field=column) from None


def _csv(path: Path, handle: Iterable[str]) -> Curve:
    reader = csv.DictReader(handle)
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    missing = [c for c in ("step", "loss") if c not in fields]
    if missing:
        raise GpulensError(
            f"header lacks {', '.join(missing)}; a loss curve CSV needs step,loss columns", path=path
        )
    reader.fieldnames = fields
    points: Curve = []
    for row, record in enumerate(reader, start=1):  # data rows from 1, header excluded, as ingest counts them
        loss_text = (record.get("loss") or "").strip()
        if not loss_text:
            continue
        step = int(_number(path, row, "step", (record.get("step") or "").strip(), int))
        points.append((step, _number(path, row, "loss", loss_text, float)))
    return points


def _jsonl(path: Path) -> Curve:
    runs: set[tuple[object, object]] = set()
    points: Curve = []
    for row, record in read_records(path):
        if record["kind"] != STEP or "loss" not in record:
            continue
        runs.add((record.get("job_id"), record.get("rank")))
        loss = record["loss"]
        step = _number(path, row, "step", record.get("step"), int)
        points.append((int(step), math.nan if loss is None else _number(path, row, "loss", loss, float)))
    if len(runs) > 1:
        listed = ", ".join(f"{job} rank {rank}" for job, rank in sorted(runs, key=str))
        raise GpulensError(f"holds the loss of several runs ({listed}); check one run per file", path=path)
    return points
