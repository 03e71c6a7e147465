"""helm/gpulens renders, lints clean and yields valid Kubernetes objects for every values set."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

import gpulens
from tests.helm import crd_schemas
from tests.helm.chart import (
    CHART,
    NAMESPACE,
    VALUES_DIR,
    VALUES_SETS,
    load_values,
    notes,
    render_with,
    rendered,
)

# The chart's floor (Chart.yaml kubeVersion) and the newest schemas kubernetes-validate bundles.
KUBE_VERSIONS = ("1.27.0", kubernetes_validate.utils.latest_version())
WARNING = 2  # helm lint severities: 1 info, 2 warning, 3 error


@pytest.mark.parametrize("values_set", sorted(VALUES_SETS))
def test_lint_strict_is_clean(values_set: str) -> None:
    """`helm lint --strict` equivalent: no warning, no error (an info such as 'icon is recommended' is
    fine)."""
    report = helm.lint(
        CHART, load_values(VALUES_SETS[values_set]), strict=True, namespace=NAMESPACE, kube_version="v1.30.0"
    )
    problems = [m for m in report["messages"] if m["severity"] >= WARNING]
    assert problems == [] and report["errors"] == []


@pytest.mark.parametrize("values_set", sorted(VALUES_SETS))
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_validates_against_kubernetes_schemas(values_set: str, kube_version: str) -> None:
    manifests = rendered(values_set)
    assert manifests, "the chart rendered nothing"
    for m in manifests:
        if m.kind in crd_schemas.BY_KIND:
            jsonschema.validate(m.doc, crd_schemas.BY_KIND[m.kind])
        else:
            # strict: unknown fields are errors, as `kubectl apply --validate=strict` has them.
            kubernetes_validate.validate(m.doc, kube_version, strict=True)


@pytest.mark.parametrize("values_set", sorted(VALUES_SETS))
def test_object_names_are_unique_and_namespaced_by_release(values_set: str) -> None:
    keys = [(m.kind, m.name) for m in rendered(values_set)]
    assert len(keys) == len(set(keys))
    assert all(name.startswith("gl-gpulens") for _, name in keys)


def test_kubernetes_validate_rejects_a_broken_manifest() -> None:
    """The validation above can fail: a container port given as a string is caught."""
    deployment = next(m.doc for m in rendered("defaults") if m.kind == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8050"
    with pytest.raises(kubernetes_validate.utils.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSIONS[0], strict=True)


def test_the_defaults_satisfy_the_schema() -> None:
    with helm.Chart.load(CHART) as chart:
        assert chart.schema is not None
        chart.validate_schema(chart.values)


def test_a_values_file_with_wrong_types_is_rejected() -> None:
    wrong = load_values(VALUES_DIR / "wrong-type.yaml")
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as caught:
        chart.validate_schema(chart.merge_values(wrong))
    message = str(caught.value)
    assert "/agent/port" in message and "/serviceMonitor/enabled" in message
    report = helm.lint(CHART, wrong, strict=True, namespace=NAMESPACE)
    assert [m for m in report["messages"] if m["severity"] == 3]


@pytest.mark.parametrize(
    "bad",
    [
        {"agent": {"hostPID": "false"}},
        {"agent": {"backend": "cuda"}},
        {"agent": {"gpuNodeLabels": []}},
        {"warehouse": {"mode": "nfs"}},
        {"serviceAccounts": {"ingest": {"roleArn": "my-role"}}},
        {"cronJobs": {"ingestUsage": {"schedule": "hourly"}}},
        {"explorer": {"replicas": 1.5}},
        {"agnet": {"enabled": True}},
    ],
)
def test_schema_rejects(bad: dict[str, Any]) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(bad))


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"prometheusRule": {"enabled": True}, "agent": {"enabled": True}, "warehouse": {"mode": "s3"}},
            "warehouse.s3.uri",
        ),
        ({"cronJobs": {"ingestCur": {"enabled": True}}}, "cronJobs.ingestCur.sources"),
        ({"cronJobs": {"ingestUsage": {"enabled": True}}}, "cronJobs.ingestUsage.prometheusUrl"),
        ({"cronJobs": {"weeklyReport": {"enabled": True}}}, "cronJobs.weeklyReport.out"),
        ({"serviceMonitor": {"enabled": True}, "agentService": {"enabled": False}}, "agentService.enabled"),
        ({"grafana": {"push": {"enabled": True}}}, "grafana.push.url"),
        (
            {"grafana": {"push": {"enabled": True, "url": "https://grafana.example"}}},
            "grafana.push.tokenSecret.name",
        ),
    ],
)
def test_incomplete_settings_fail_with_the_key_to_set(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message.replace(".", r"\.")):
        render_with(values)


def test_notes_say_where_to_look_next() -> None:
    text = notes(load_values(VALUES_SETS["all-features"]))
    assert "https://gpulens.corp.example/" in text
    assert "ServiceMonitor gl-gpulens-agent" in text
    assert "kubectl -n gpulens get cronjobs" in text
    assert "port-forward svc/gl-gpulens-explorer" in notes()


def test_values_files_are_plain_yaml_mappings() -> None:
    for path in VALUES_DIR.glob("*.yaml"):
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_chart_app_version_is_the_package_version() -> None:
    """The default image tag (appVersion) is the gpulens release the chart's commands were written against."""
    with helm.Chart.load(CHART) as chart:
        assert chart.metadata["appVersion"] == gpulens.__version__


def test_the_packaged_chart_renders_the_same_objects(tmp_path: Path) -> None:
    """`helm package` keeps files/ (rules, dashboards, scripts): the .tgz renders what the directory does."""
    archive = helm.package(CHART, destination=tmp_path)
    values = load_values(VALUES_SETS["all-features"])
    with helm.Chart.load(archive) as packaged, helm.Chart.load(CHART) as directory:
        assert packaged.render(values=values, name="gl", namespace=NAMESPACE) == directory.render(
            values=values, name="gl", namespace=NAMESPACE
        )
        names = {f["name"] for f in packaged.files}
    assert "files/rules/gpulens-rules.yaml" in names and "files/scripts/warehouse_sync.py" in names


def test_a_release_named_gpulens_gets_the_names_the_docs_use() -> None:
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values={"remediation": {"enabled": True}}, name="gpulens", namespace="gpulens")
    names = {
        (d["kind"], d["metadata"]["name"])
        for template, text in files.items()
        if not template.endswith("NOTES.txt")
        for d in yaml.safe_load_all(text)
        if d
    }
    assert {
        ("DaemonSet", "gpulens-agent"),
        ("Deployment", "gpulens-explorer"),
        ("Service", "gpulens-remediation"),
        ("ServiceAccount", "gpulens-explorer"),
    } <= names
