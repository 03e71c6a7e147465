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


# End-to-end suites: each starts real servers (Prometheus, Alertmanager, Chromium, an S3-compatible or
# an SMTP server; the agent, the explorer or `remediate serve` as subprocesses) or builds the demo.
# `make test-fast` (-m "not e2e and not slow") leaves them out; `make test` runs them. A module here
# that no longer exists fails tests/test_markers.py.
E2E_MODULES = frozenset(
    {
        "attribution/test_commands_warehouse.py",
        "attribution/test_sources_and_samples.py",
        "attribution/test_usage_prometheus.py",
        "collector/test_agent_integration.py",
        "collector/test_http_and_host.py",
        "collector/test_trust.py",
        "contract/test_agent_contract.py",
        "contract/test_cur_sources_contract.py",
        "contract/test_outputs_contract.py",
        "contract/test_remediate_contract.py",
        "demo/test_demo.py",
        "explorer/test_app.py",
        "explorer/test_browser.py",
        "explorer/test_browser_presentation.py",
        "explorer/test_presentation.py",
        "explorer/test_live.py",
        "grafana/test_end_to_end.py",
        "helm/test_warehouse_sync.py",
        "remediation/test_actions_aws.py",
        "remediation/test_end_to_end.py",
        "remediation/test_hardening.py",
        "report/test_deliver.py",
        "report/test_weekly.py",
        "rules/test_rules.py",
        "trainer/test_reference.py",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and item.path.relative_to(here).as_posix() in E2E_MODULES:
            item.add_marker(pytest.mark.e2e)
