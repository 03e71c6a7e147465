"""docs/design.md §1 for remediation/: it reads the collector's XID catalog and metric names, nothing else."""

from __future__ import annotations

from tests.support.servers import REPO
from tests.test_layout import imported_modules

ALLOWED_FROM_OTHER_COMPONENTS = {"gpulens.collector.xid", "gpulens.metrics"}
COMPONENTS = ("gpulens.collector", "gpulens.trainer", "gpulens.attribution", "gpulens.dashboards")


def test_remediation_imports_only_the_xid_catalog_and_metric_names() -> None:
    offenders = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in (REPO / "remediation").rglob("*.py")
        for name in imported_modules(path)
        if name.startswith(COMPONENTS) and name not in ALLOWED_FROM_OTHER_COMPONENTS
    ]
    assert offenders == []
    uses = {name for path in (REPO / "remediation").rglob("*.py") for name in imported_modules(path)}
    assert "gpulens.collector.xid" in uses  # the check above looks at real imports
