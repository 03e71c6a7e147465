"""Renders, lints and validates helm/gpulens offline, through Helm's own Go library (helm-python-sdk).

No helm binary and no cluster: `helm_python.Chart.render` is `helm template`, `helm_python.lint` is
`helm lint`, and `Chart.validate_schema` applies values.schema.json the way `helm install` does.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from tests.support.servers import REPO

CHART = REPO / "helm" / "gpulens"
VALUES_DIR = Path(__file__).resolve().parent / "values"
RELEASE = "gl"
NAMESPACE = "gpulens"
# Values sets rendered by the tests; None is the chart's defaults.
VALUES_SETS = {
    "defaults": None,
    "all-features": VALUES_DIR / "all-features.yaml",
    "agent-only": VALUES_DIR / "agent-only.yaml",
    "s3-warehouse": VALUES_DIR / "s3-warehouse.yaml",
}


@dataclass(frozen=True)
class Manifest:
    """One rendered Kubernetes object and the template it came from."""

    template: str
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])


def load_values(path: Path | None) -> dict[str, Any] | None:
    return None if path is None else yaml.safe_load(path.read_text())


@functools.cache
def rendered(values_set: str) -> tuple[Manifest, ...]:
    """The chart rendered with one of VALUES_SETS, one Manifest per YAML document (NOTES.txt excluded)."""
    values = load_values(VALUES_SETS[values_set])
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return tuple(_documents(files))


def render_with(values: dict[str, Any]) -> tuple[Manifest, ...]:
    """The chart rendered with ad-hoc values (raises HelmValuesError / HelmRenderError)."""
    with helm.Chart.load(CHART) as chart:
        return tuple(
            _documents(chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True))
        )


def notes(values: dict[str, Any] | None = None) -> str:
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return files["gpulens/templates/NOTES.txt"]


def _documents(files: dict[str, str]) -> Iterator[Manifest]:
    for template, text in sorted(files.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                yield Manifest(template, doc)


def of_kind(manifests: tuple[Manifest, ...], kind: str) -> list[Manifest]:
    return [m for m in manifests if m.kind == kind]


def one(manifests: tuple[Manifest, ...], kind: str, component: str) -> Manifest:
    """The single object of `kind` whose app.kubernetes.io/component label is `component`."""
    found = [
        m
        for m in of_kind(manifests, kind)
        if m.doc["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"expected one {kind} for {component}, found {[m.name for m in found]}"
    return found[0]


def pod_spec(manifest: Manifest) -> dict[str, Any]:
    """The pod template spec of a workload (Deployment, DaemonSet, CronJob)."""
    spec = manifest.doc["spec"]
    if manifest.kind == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])


WORKLOAD_KINDS = ("Deployment", "DaemonSet", "CronJob", "StatefulSet", "Job")


def workloads(manifests: tuple[Manifest, ...]) -> list[Manifest]:
    return [m for m in manifests if m.kind in WORKLOAD_KINDS]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])
