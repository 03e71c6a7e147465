"""Session fixtures for the explorer: demo data built once, the app served once, one Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gpulens.dashboards.explorer.app import ExplorerConfig, ExplorerServer

from gpulens.demo.build import DemoBuild
from tests.support.browser import chromium
from tests.support.explorer_data import demo_data  # noqa: F401 - a fixture
from tests.support.servers import free_port, wait_http


@dataclass(frozen=True)
class Served:
    url: str
    data: DemoBuild


@pytest.fixture(scope="session")
def explorer(demo_data: DemoBuild) -> Iterator[Served]:  # noqa: F811
    server = ExplorerServer(ExplorerConfig(warehouse=demo_data.warehouse, port=free_port()))
    server.start()
    try:
        wait_http(f"{server.url}/cost")
        yield Served(server.url, demo_data)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory, downloads: Path) -> Iterator[object]:
    with chromium(tmp_path_factory.mktemp("chromium-profile"), downloads) as driver:
        yield driver
