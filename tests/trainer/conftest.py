"""A datagram socket standing in for the agent's (docs/design.md §4), bound by the test itself."""

from __future__ import annotations

import json
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


class Receiver:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)

    def records(self, timeline: bool = False) -> list[dict[str, Any]]:
        """Every datagram received so far, decoded strictly (NaN is not JSON); the `run` and `phase`
        records (the time model) only with `timeline=True`."""
        out = []
        while True:
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                return out
            record = json.loads(data, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
            if timeline or record["kind"] not in TIMELINE:
                out.append(record)


TIMELINE = ("run", "phase")


def log_records(path: Path, timeline: bool = False) -> list[dict[str, Any]]:
    """The records of a JSONL log; the `run` and `phase` records only with `timeline=True`."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if timeline or r["kind"] not in TIMELINE]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    # Unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="gl-", dir="/tmp") as short:
        rx = Receiver(Path(short) / "agent.sock")
        yield rx
        rx.sock.close()
