"""The trainer socket: batches through a real Unix datagram socket, queue sysctl, stale files."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from gpulens.collector.socket import DatagramServer, raise_dgram_qlen
from gpulens.collector.trainstats import TrainStats
from gpulens.errors import GpulensError


def test_records_through_a_real_socket_in_batches(tmp_path: Path) -> None:
    stats = TrainStats()
    batches: list[int] = []

    def handle(batch: list[bytes], creds: list[bytes]) -> None:
        batches.append(len(batch))
        stats.ingest_many(batch, creds)

    path = tmp_path / "s.sock"
    server = DatagramServer(path, handle)
    server.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            for i in range(300):
                s.sendto(
                    json.dumps({"v": 1, "kind": "step", "job_id": "j", "rank": 0, "step": i}).encode(),
                    str(path),
                )
            s.sendto(b"{" + b" " * 9000 + b"}", str(path))  # over 8 KiB: malformed even though it parses
        deadline = time.monotonic() + 5
        while stats.copy()[2]["ok"] + stats.copy()[2]["malformed"] < 301 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stats.copy()[2] == {"ok": 300, "malformed": 1, "rejected": 0, "over_limit": 0}
        assert sum(batches) == 301 and max(batches) <= 256
    finally:
        server.stop()
    assert not path.exists()


def test_a_stale_socket_is_replaced_but_a_regular_file_is_not(tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(stale))
    server = DatagramServer(stale, lambda batch, creds: None)
    server.stop()
    regular = tmp_path / "file.sock"
    regular.write_text("precious")
    with pytest.raises(GpulensError, match="not a socket"):
        DatagramServer(regular, lambda batch, creds: None)
    assert regular.read_text() == "precious"


def test_raise_dgram_qlen_only_raises(tmp_path: Path) -> None:
    sysctl = tmp_path / "max_dgram_qlen"
    sysctl.write_text("10\n")
    assert raise_dgram_qlen(8192, sysctl) == 8192 and sysctl.read_text().strip() == "8192"
    sysctl.write_text("65536\n")
    assert raise_dgram_qlen(8192, sysctl) == 65536 and sysctl.read_text().strip() == "65536"
    assert raise_dgram_qlen(8192, tmp_path / "missing") is None
