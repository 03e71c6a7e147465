"""Loss logs as researchers already have them: detect the format of a file and read its steps.

`runs check` (gpulens.trainer.curves) and `ingest runs` (gpulens.attribution.ingest.runs) both read
files through `detect_format` and `read_log`, so the two commands accept the same files and refuse
the same ones with the same line. Accepted (docs/trainer.md, "Accepted log formats"):

| format | what it looks like |
|---|---|
| `csv` | gpulens' own CSV: a header with `step` and `loss` (read by the callers, not here) |
| `jsonl` | the trainer's JSONL (`gpulens.wire` records; read by the callers, not here) |
| `text` | llm.c (`s:N trl:X lr:Y norm:Z`) and modded-nanogpt (`step:N/M train_loss:X`) text logs |
| `hf_trainer_state` | a Hugging Face Trainer `trainer_state.json` (its `log_history`) |
| `lightning_csv` | a Lightning CSVLogger `metrics.csv` (`step` and a loss column: `train_loss_step`, ...) |
| `wandb_csv` | a W&B CSV export: a panel (`Step`, `RUN - train/loss`) or a run history (`_step`, ...) |
| `tensorboard` | a TensorBoard event file (`events.out.tfevents.*`), read with tensorboard's own reader |

A point is one optimizer step: its loss (NaN for a non-finite loss; `None` for a logged step
without a loss), and the learning rate and gradient norm where the log has them. Validation and eval
losses are not the training curve and are left out. Nothing here imports torch; tensorboard is
imported only to read an event file (the `logs` extra).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from gpulens.errors import GpulensError

CSV: Final = "csv"
JSONL: Final = "jsonl"
TEXT: Final = "text"
HF_TRAINER_STATE: Final = "hf_trainer_state"
LIGHTNING_CSV: Final = "lightning_csv"
WANDB_CSV: Final = "wandb_csv"
TENSORBOARD: Final = "tensorboard"
FORMATS: Final = (CSV, JSONL, TEXT, HF_TRAINER_STATE, LIGHTNING_CSV, WANDB_CSV, TENSORBOARD)

ACCEPTED: Final = (
    "accepted: CSV with step,loss columns, trainer JSONL, llm.c or modded-nanogpt text log "
    "(s:N trl:X, step:N/M train_loss:X), Hugging Face trainer_state.json, Lightning CSVLogger "
    "metrics.csv, W&B CSV export, TensorBoard event file"
)

# Training-loss names in the order they are preferred when a log holds several (Lightning logs
# `train_loss_step` and `train_loss_epoch` for one `self.log(..., on_step=True, on_epoch=True)`).
LOSS_NAMES: Final = (
    "train/loss", "train_loss", "train_loss_step", "train/loss_step", "training_loss", "train/lm_loss",
    "loss", "loss_step", "lm_loss", "lm loss",
)  # fmt: skip
LR_NAMES: Final = ("lr", "learning_rate", "train/lr", "train/learning_rate", "lr-adamw", "lr-adam", "lr-sgd")
GRAD_NORM_NAMES: Final = ("grad_norm", "train/grad_norm", "gradient_norm", "norm", "grad-norm")

# llm.c: `s:120 trl:6.4221 lr:0.000168 norm:0.95`; modded-nanogpt: `step:120/5100 train_loss:6.42 ...`.
_LLMC = re.compile(r"^s:(?P<step>\d+) trl:(?P<loss>\S+)(?P<rest>.*)$")
_NANOGPT = re.compile(r"^step:(?P<step>\d+)/\d+ .*?\btrain_loss:(?P<loss>\S+)(?P<rest>.*)$")
_FIELD = re.compile(r"\b(lr|norm):(\S+)")
_TEXT_SCAN_BYTES = 4 << 20  # a log's first step line sits after the script it logged (~100 KB)


@dataclass(frozen=True)
class LogPoint:
    """One logged training step: `loss` NaN when non-finite, `None` when the step logged no loss."""

    step: int
    loss: float | None
    lr: float | None = None
    grad_norm: float | None = None
    ts: datetime | None = None


@dataclass(frozen=True)
class RunLog:
    """The points of one run, in file order, and the format they were read from."""

    format: str
    points: tuple[LogPoint, ...]


def refuse(path: Path, why: str) -> GpulensError:
    """The one line for a file no reader takes: why, then the accepted formats."""
    return GpulensError(f"{why}; {ACCEPTED}", path=path)


# ---- detection ------------------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    """One of `FORMATS` for the file at `path`; a GpulensError listing the accepted formats if none."""
    if not path.is_file():
        raise refuse(path, "no such file")
    if "tfevents" in path.name:
        return TENSORBOARD
    head = _head(path)
    if head is None:
        raise refuse(path, "not UTF-8 text and not a TensorBoard event file (events.out.tfevents.*)")
    # a spreadsheet that saved the file may have put a byte-order mark first
    first = next((line.strip() for line in head.lstrip("\ufeff").splitlines() if line.strip()), "")
    if not first:
        raise refuse(path, "empty file")
    if first.startswith("{"):
        return _json_kind(path, first)
    kind = _csv_kind(first)
    if kind is not None:
        return kind
    if _has_step_lines(path):
        return TEXT
    if "," in first:
        raise refuse(path, "header lacks step, loss and matches no known export")
    raise refuse(path, "no loss lines found")


def _head(path: Path) -> str | None:
    with path.open("rb") as handle:
        data = handle.read(64 << 10)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the 64 KiB read is still text.
        if exc.start >= len(data) - 3:
            return data[: exc.start].decode("utf-8")
        return None


def _json_kind(path: Path, first: str) -> str:
    """A JSONL log has one whole object on its first line; a trainer_state.json is one pretty-printed
    document (its first line is `{`) whose object holds `log_history`. A first line that is neither
    is left to the JSONL reader, which names the row."""
    if _whole_json_object(first):
        return JSONL
    try:
        with path.open(encoding="utf-8") as handle:
            document = json.load(handle)
    except (ValueError, UnicodeDecodeError):
        return JSONL
    if isinstance(document, dict) and "log_history" in document:
        return HF_TRAINER_STATE
    raise refuse(path, "a JSON document, neither a trainer_state.json (no log_history) nor JSONL")


def _whole_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _header(first: str) -> list[str]:
    return [c.strip() for c in next(csv.reader([first]), [])]


def _csv_kind(first: str) -> str | None:
    names = _header(first)
    lowered = [n.lower() for n in names]
    if len(names) < 2:
        return None
    if "step" in lowered and "loss" in lowered:
        return CSV
    if _wandb_loss_columns(names) and ("Step" in names or "_step" in lowered):
        return WANDB_CSV
    if "_step" in lowered and _pick(lowered, LOSS_NAMES) is not None:
        return WANDB_CSV
    if "step" in lowered and _pick(lowered, LOSS_NAMES) is not None:
        return LIGHTNING_CSV
    return None


def _has_step_lines(path: Path) -> bool:
    with path.open(encoding="utf-8", errors="replace") as handle:
        text = handle.read(_TEXT_SCAN_BYTES)
    return any(_LLMC.match(line) or _NANOGPT.match(line) for line in text.splitlines())


# ---- reading --------------------------------------------------------------------------------------


def read_log(path: Path, fmt: str | None = None) -> RunLog:
    """The points of a log in one of the formats read here (not `csv` or `jsonl`: the callers own
    those). Bad values raise GpulensError naming the file, row or step, and field."""
    fmt = fmt or detect_format(path)
    readers = {
        TEXT: read_text_log,
        HF_TRAINER_STATE: read_trainer_state,
        LIGHTNING_CSV: read_lightning_csv,
        WANDB_CSV: read_wandb_csv,
        TENSORBOARD: read_tensorboard,
    }
    if fmt not in readers:
        raise GpulensError(f"read_log does not read {fmt!r} files", path=path)
    points = tuple(readers[fmt](path))
    if not any(p.loss is not None for p in points):
        raise refuse(path, f"read as {fmt} but holds no training loss")
    return RunLog(fmt, points)


def _float(text: object, path: Path, row: int, field: str | None) -> float | None:
    """A number from a log cell: empty is None, `nan`/`inf` are non-finite numbers."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise GpulensError(f"{text!r} is not a number", path=path, row=row, field=field) from None


def _step(text: object, path: Path, row: int, field: str) -> int:
    value = _float(text, path, row, field)
    if value is None or not math.isfinite(value) or value != int(value):
        raise GpulensError(f"{text!r} is not a step number", path=path, row=row, field=field)
    return int(value)


def read_text_log(path: Path) -> Iterator[LogPoint]:
    """llm.c `s:N trl:X [lr:Y norm:Z]` and modded-nanogpt `step:N/M train_loss:X` lines; every other
    line (the logged script, nvidia-smi, `tel:`/`val_loss:` evaluations) is skipped."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for row, line in enumerate(handle, start=1):
            match = _LLMC.match(line.rstrip("\r\n")) or _NANOGPT.match(line.rstrip("\r\n"))
            if match is None:
                continue
            extra = dict(_FIELD.findall(match.group("rest")))
            yield LogPoint(
                step=_step(match.group("step"), path, row, "step"),
                loss=_float(match.group("loss"), path, row, "loss"),
                lr=_float(extra.get("lr"), path, row, "lr"),
                grad_norm=_float(extra.get("norm"), path, row, "norm"),
            )


def read_trainer_state(path: Path) -> Iterator[LogPoint]:
    """`log_history` entries that carry a training `loss` (eval entries carry `eval_loss`; the final
    summary carries `train_loss` over the whole run and is not a step of the curve)."""
    with path.open(encoding="utf-8") as handle:
        document = json.load(handle)  # Python's json reads the NaN/Infinity that the Trainer writes
    history = document.get("log_history") if isinstance(document, dict) else None
    if not isinstance(history, list):
        raise refuse(path, "a trainer_state.json needs a log_history list")
    for row, entry in enumerate(history, start=1):
        if not isinstance(entry, dict) or "loss" not in entry:
            continue
        yield LogPoint(
            step=_step(entry.get("step"), path, row, "step"),
            loss=_float(entry["loss"], path, row, "loss"),
            lr=_float(entry.get("learning_rate"), path, row, "learning_rate"),
            grad_norm=_float(entry.get("grad_norm"), path, row, "grad_norm"),
        )


def _first_line(path: Path) -> str:
    with path.open(encoding="utf-8-sig") as handle:
        return handle.readline()


def _pick(names: Sequence[str], preferred: Iterable[str]) -> str | None:
    """The first of `preferred` among `names` (compared lower-cased), as spelt in `names`."""
    lowered = {n.lower(): n for n in names}
    return next((lowered[p] for p in preferred if p in lowered), None)


def _csv_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    handle = io.StringIO(path.read_text(encoding="utf-8-sig"))
    reader = csv.DictReader(handle)
    names = [n.strip() for n in reader.fieldnames or []]
    reader.fieldnames = names
    return names, ((row, record) for row, record in enumerate(reader, start=1))


def _csv_points(
    path: Path, step: str, loss: str, lr: str | None, grad: str | None, ts: str | None = None
) -> Iterator[LogPoint]:
    names, rows = _csv_rows(path)
    for row, record in rows:
        value = _float(record.get(loss), path, row, loss)
        if value is None:
            continue  # a row of other metrics (validation, epoch means): not a training step
        yield LogPoint(
            step=_step(record.get(step), path, row, step),
            loss=value,
            lr=_float(record.get(lr), path, row, lr) if lr else None,
            grad_norm=_float(record.get(grad), path, row, grad) if grad else None,
            ts=_unix(_float(record.get(ts), path, row, ts)) if ts else None,
        )


def read_lightning_csv(path: Path) -> Iterator[LogPoint]:
    """Lightning's CSVLogger: one row per `log_metrics` call; training rows have the loss column
    filled, validation and epoch rows leave it empty."""
    names = _header(_first_line(path))
    loss = _pick(names, LOSS_NAMES)
    step = _pick(names, ("step",))
    if loss is None or step is None:
        raise refuse(path, "a Lightning metrics.csv needs step and a training loss column")
    lr = _pick(names, LR_NAMES) or next((n for n in names if n.lower().startswith("lr-")), None)
    return _csv_points(path, step, loss, lr, _pick(names, GRAD_NORM_NAMES))


def _wandb_loss_columns(names: Sequence[str]) -> list[str]:
    """Panel-export columns `RUN - METRIC` whose metric is a training loss (not its __MIN/__MAX band)."""
    return [n for n in names if " - " in n and n.rsplit(" - ", 1)[1].lower() in LOSS_NAMES]


def read_wandb_csv(path: Path) -> Iterator[LogPoint]:
    """A W&B panel export (`Step`, `RUN - train/loss`, `RUN - train/loss__MIN`, ...), one run per
    file; or a run history export (`_step`, `_timestamp`, `train/loss`, ...)."""
    names = _header(_first_line(path))
    panel = _wandb_loss_columns(names)
    if panel:
        runs = sorted({n.rsplit(" - ", 1)[0] for n in panel})
        if len(runs) > 1:
            raise GpulensError(
                f"holds the loss of several runs ({', '.join(runs)}); export one run per file", path=path
            )
        step = _pick(names, ("Step", "_step")) or "Step"
        metric = {n.rsplit(" - ", 1)[1].lower(): n for n in names if " - " in n}
        lr, grad = _pick(list(metric), LR_NAMES), _pick(list(metric), GRAD_NORM_NAMES)
        return _csv_points(path, step, panel[0], metric.get(lr or ""), metric.get(grad or ""))
    loss = _pick(names, LOSS_NAMES)
    if loss is None:
        raise refuse(path, "a W&B export needs a training loss column")
    return _csv_points(
        path, _pick(names, ("_step",)) or "_step", loss, _pick(names, LR_NAMES),
        _pick(names, GRAD_NORM_NAMES), _pick(names, ("_timestamp",)),
    )  # fmt: skip


def _unix(seconds: float | None) -> datetime | None:
    if seconds is None or not math.isfinite(seconds):
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None)


def read_tensorboard(path: Path) -> Iterator[LogPoint]:
    """Scalars of a TensorBoard event file through tensorboard's EventAccumulator (every event kept):
    the loss tag preferred by `LOSS_NAMES`, with the learning-rate and grad-norm tags at the same steps."""
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        from gpulens.extras import install_hint

        raise GpulensError(
            f"a TensorBoard event file needs tensorboard: {install_hint('logs')}", path=path
        ) from None
    accumulator = event_accumulator.EventAccumulator(str(path), size_guidance={event_accumulator.SCALARS: 0})
    try:
        accumulator.Reload()
    except Exception as exc:  # noqa: BLE001 - tensorboard raises its own and protobuf errors on a bad file
        raise refuse(path, f"not a readable TensorBoard event file ({type(exc).__name__})") from None
    tags = accumulator.Tags().get(event_accumulator.SCALARS, [])
    loss = _pick(tags, LOSS_NAMES)
    if loss is None:
        raise refuse(path, f"TensorBoard scalars {', '.join(sorted(tags)) or 'none'} hold no training loss")

    def by_step(tag: str | None) -> dict[int, float]:
        return {e.step: e.value for e in accumulator.Scalars(tag)} if tag else {}

    lr, grad = by_step(_pick(tags, LR_NAMES)), by_step(_pick(tags, GRAD_NORM_NAMES))
    for event in accumulator.Scalars(loss):
        yield LogPoint(
            step=int(event.step),
            loss=float(event.value),
            lr=lr.get(event.step),
            grad_norm=grad.get(event.step),
            ts=_unix(event.wall_time),
        )


def as_records(log: RunLog) -> Iterator[dict[str, Any]]:
    """The points as flat records with the trainer record's field names (docs/design.md §4), for a
    caller that loads them like trainer steps; a non-finite loss stays NaN (not the wire's null)."""
    for p in log.points:
        record: dict[str, Any] = {"step": p.step}
        if p.loss is not None:
            record["loss"] = p.loss
        for key, value in (("lr", p.lr), ("grad_norm", p.grad_norm), ("ts", p.ts and p.ts.isoformat())):
            if value is not None:
                record[key] = value
        yield record
