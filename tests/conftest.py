"""Shared pytest setup: tests never write outside tmp_path, and artifacts go to tests/artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's warehouse or socket by accident."""
    monkeypatch.setenv("GPULENS_WAREHOUSE", str(tmp_path / "default.duckdb"))
    monkeypatch.setenv("GPULENS_SOCKET", str(tmp_path / "default-agent.sock"))
    monkeypatch.delenv("GPULENS_TRAIN_LOG", raising=False)
