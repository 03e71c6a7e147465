"""The audit log: one JSON object per line, appended and fsynced before the decision is acted on."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from gpulens.errors import GpulensError
from gpulens.remediation.model import AuditRecord

AUDIT_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AuditRecord))


def rfc3339(epoch_seconds: float) -> str:
    """UTC RFC 3339 text with milliseconds, e.g. ``2026-11-27T21:05:00.123Z``."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp such as the audit log's `ts`."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class AuditLog:
    """Append-only JSONL file; each `append` is durable (fsync) when it returns.

    Writing before acting means a crash mid-action still leaves the intent on disk, and a restarted
    server can rebuild its deduplication and blast-radius state from the file (`records`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Opened once: a log that cannot be written must stop the server at start, not mid-alert.
            self._file = path.open("a", encoding="utf-8")
            self._end_torn_line()
        except OSError as exc:
            raise GpulensError(f"cannot open the audit log for appending: {exc.strerror}", path=path) from exc

    def _end_torn_line(self) -> None:
        """A crash mid-write leaves a last line without its newline; end it, or the next record joins it."""
        with self.path.open("rb") as raw:
            if raw.seek(0, os.SEEK_END) == 0:
                return
            raw.seek(-1, os.SEEK_END)
            if raw.read(1) == b"\n":
                return
        self._file.write("\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def append(self, record: AuditRecord) -> None:
        self.append_all([record])

    def append_all(self, records: list[AuditRecord]) -> None:
        """Write every record, then one fsync: a batch's decisions are durable together before any acts."""
        if not records:
            return
        text = "".join(json.dumps(dataclasses.asdict(r), separators=(",", ":")) + "\n" for r in records)
        with self._lock:
            self._file.write(text)
            self._file.flush()
            os.fsync(self._file.fileno())

    def records(self) -> Iterator[AuditRecord]:
        """Every well-formed record already in the file; torn or foreign lines are skipped."""
        with self.path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    raw = json.loads(line)
                    yield AuditRecord(**{key: raw[key] for key in AUDIT_KEYS})
                except (ValueError, KeyError, TypeError):
                    continue

    def close(self) -> None:
        with self._lock:
            self._file.close()
