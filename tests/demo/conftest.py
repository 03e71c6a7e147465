"""tests/demo shares the session's demo build with tests/explorer."""

from __future__ import annotations

from tests.support.explorer_data import demo_data  # noqa: F401 - a fixture
