"""A fake DCGM session (the DCGM backend's seam): scripted latest values per GPU and field id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gpulens.collector.backends.base import GpuIdentity


class FakeDcgmSession:
    def __init__(self, gpus: int = 2, unsupported: Sequence[int] = ()) -> None:
        self.ids = [GpuIdentity(i, f"GPU-dcgm-{i}", "NVIDIA A100-SXM4-40GB") for i in range(gpus)]
        self.unsupported = set(unsupported)
        self.values: dict[int, dict[int, tuple[float | None, int]]] = {i: {} for i in range(gpus)}
        self.xid_log: dict[int, list[tuple[float | None, int]]] = {}  # XIDs since the last call
        self.paused: list[bool] = []
        self.closed = False

    def gpus(self) -> Sequence[GpuIdentity]:
        return self.ids

    def watch(self, field_ids: Sequence[int], interval_s: float) -> Sequence[int]:
        return [f for f in field_ids if f not in self.unsupported]

    def latest(self) -> Mapping[int, Mapping[int, tuple[float | None, int]]]:
        return {
            g: {f: v for f, v in fields.items() if f not in self.unsupported}
            for g, fields in self.values.items()
        }

    def xids_since_last_call(self) -> Mapping[int, Sequence[tuple[float | None, int]]]:
        out, self.xid_log = self.xid_log, {}
        return out

    def pause_profiling(self, paused: bool) -> None:
        self.paused.append(paused)

    def close(self) -> None:
        self.closed = True


# A typical A100 reading, in DCGM's own units (MiB, mJ, MHz, %), and profiling ratios 0..1.
A100_FIELDS = {
    100: 1410.0,
    150: 61.0,
    155: 312.5,
    156: 5_000_000.0,
    203: 97.0,
    250: 40960.0,
    252: 30000.0,
    310: 2.0,
    311: 0.0,
    1002: 0.81,
    1003: 0.4,
    1004: 0.52,
    1005: 0.33,
}
