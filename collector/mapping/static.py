"""Static labels for a dedicated node (`--label team=search --label job_id=...`): the weakest mapping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from gpulens.collector.backends.base import GpuReading
from gpulens.errors import GpulensError

KEYS = ("job_id", "team")


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    """`KEY=VALUE` strings into a dict; only job_id and team are meaningful on GPU series."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in KEYS or not value.strip():
            raise GpulensError(f"--label {item!r}: expected job_id=VALUE or team=VALUE", field="--label")
        out[key.strip()] = value.strip()
    return out


class StaticMapper:
    """Fills job_id/team on readings that no other source mapped."""

    def __init__(self, labels: Mapping[str, str]) -> None:
        self.job_id = labels.get("job_id")
        self.team = labels.get("team")

    def annotate(self, readings: Sequence[GpuReading]) -> list[GpuReading]:
        if self.job_id is None and self.team is None:
            return list(readings)
        return [
            r if r.job_id or r.team else replace(r, job_id=self.job_id or "", team=self.team or "")
            for r in readings
        ]
