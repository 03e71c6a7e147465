"""The `e2e` marker (tests/conftest.py) names suites that exist: `make test-fast` leaves out what it says."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import E2E_MODULES

HERE = Path(__file__).parent


def test_every_e2e_module_exists() -> None:
    assert sorted(m for m in E2E_MODULES if not (HERE / m).is_file()) == []


def test_modules_that_start_a_server_or_a_browser_are_e2e() -> None:
    """A new suite that starts the agent, a browser or Prometheus belongs in `E2E_MODULES` (or marks its
    own tests `e2e`), so `make test-fast` stays the quick subset it says it is."""
    starters = ("run_agent(", "run_prometheus(", "browser(", "subprocess.Popen(")
    unmarked = []
    for path in sorted(HERE.rglob("test_*.py")):
        rel = path.relative_to(HERE).as_posix()
        text = path.read_text()
        if any(s in text for s in starters) and rel not in E2E_MODULES and "mark.e2e" not in text:
            unmarked.append(rel)
    assert unmarked == []
