"""Session fixtures for the explorer: demo data built once, the app served once, one Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpulens.dashboards.explorer.app import ExplorerConfig, ExplorerServer
from gpulens.demo.build import DemoBuild
from tests.support.browser import chromium
from tests.support.explorer_data import cli_flags, demo_data  # noqa: F401 - a fixture
from tests.support.servers import free_port, wait_http


@dataclass(frozen=True)
class Served:
    url: str
    data: DemoBuild
    flags: dict[str, Any]  # `gpulens flags --format json` on the same warehouse


@pytest.fixture(scope="session")
def explorer(demo_data: DemoBuild) -> Iterator[Served]:  # noqa: F811
    # `gpulens flags` opens the warehouse for writing, which a reader in another process would block.
    flags = cli_flags(demo_data.warehouse)
    server = ExplorerServer(ExplorerConfig(warehouse=demo_data.warehouse, port=free_port()))
    server.start()
    try:
        wait_http(f"{server.url}/cost")
        assert server.warm.wait(60)
        yield Served(server.url, demo_data, flags)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory, downloads: Path) -> Iterator[object]:
    with chromium(tmp_path_factory.mktemp("chromium-profile"), downloads) as driver:
        yield driver
