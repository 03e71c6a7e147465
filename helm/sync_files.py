"""Copies the generated Prometheus rules and Grafana dashboards into the Helm chart.

Helm reads only files inside the chart, so `helm/gpulens/files/` holds copies of
`dashboards/rules/gpulens-rules.yaml` (`gpulens rules build`) and `dashboards/grafana/*.json`
(`gpulens dashboards build`). Run after regenerating either:

    python helm/sync_files.py           # refresh the copies (and drop dashboards that no longer exist)
    python helm/sync_files.py --check   # exit 1 and list the differences, change nothing

tests/helm/test_chart_files.py fails while the copies differ from the originals.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHART_FILES = REPO / "helm" / "gpulens" / "files"
RULES_SOURCE = REPO / "dashboards" / "rules" / "gpulens-rules.yaml"
DASHBOARDS_SOURCE = REPO / "dashboards" / "grafana"


@dataclass(frozen=True)
class Pair:
    """One generated original and its copy inside the chart."""

    source: Path
    copy: Path


def pairs(repo: Path = REPO) -> list[Pair]:
    """Every original that exists today, with where its copy belongs."""
    files = repo / "helm" / "gpulens" / "files"
    found = []
    rules = repo / "dashboards" / "rules" / "gpulens-rules.yaml"
    if rules.is_file():
        found.append(Pair(rules, files / "rules" / rules.name))
    for dashboard in sorted((repo / "dashboards" / "grafana").glob("*.json")):
        found.append(Pair(dashboard, files / "dashboards" / dashboard.name))
    return found


def stale_copies(repo: Path = REPO) -> list[Path]:
    """Dashboard copies in the chart whose original is gone."""
    originals = {p.copy for p in pairs(repo)}
    return sorted(
        p for p in (repo / "helm" / "gpulens" / "files" / "dashboards").glob("*.json") if p not in originals
    )


def differences(repo: Path = REPO) -> list[str]:
    """One line per copy that is missing, differs from its original, or has no original."""
    lines = [
        f"{p.copy.relative_to(repo)}: differs from {p.source.relative_to(repo)}"
        for p in pairs(repo)
        if not p.copy.is_file() or p.copy.read_bytes() != p.source.read_bytes()
    ]
    lines += [f"{p.relative_to(repo)}: its original is gone" for p in stale_copies(repo)]
    return lines


def sync(repo: Path = REPO) -> None:
    for pair in pairs(repo):
        pair.copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pair.source, pair.copy)
    for stale in stale_copies(repo):
        stale.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Copy generated rules and dashboards into helm/gpulens/files/."
    )
    parser.add_argument("--check", action="store_true", help="report differences, change nothing")
    args = parser.parse_args(argv)
    if args.check:
        lines = differences()
        for line in lines:
            print(line, file=sys.stderr)
        return 1 if lines else 0
    sync()
    return 0


if __name__ == "__main__":
    sys.exit(main())
