"""Provision dashboards through Grafana's HTTP API (grafana-client): folder, overwrite, datasource by UID.

Idempotent: a dashboard whose stored JSON already equals ours (and sits in the folder) is left
alone, so pushing twice creates no second version. Credentials never appear in errors or logs.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from gpulens.errors import GpulensError

Status = Literal["created", "updated", "unchanged"]
IGNORED_ON_COMPARE = ("id", "version")


@dataclass(frozen=True)
class GrafanaTarget:
    """Where to push: `token` (service-account token) or `user`/`password` (basic auth)."""

    url: str
    token: str | None = None
    user: str | None = None
    password: str | None = None
    folder: str = "gpulens"
    datasource_uid: str | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class Pushed:
    uid: str
    title: str
    status: Status


def redact(url: str) -> str:
    """`url` without any user:password@ part, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def connect(target: GrafanaTarget) -> GrafanaApi:
    if not re.match(r"^https?://[^/]+", target.url):
        raise GpulensError("is not an http(s) URL of a Grafana server", field="--url")
    credential: str | tuple[str, str] | None = target.token
    if target.user is not None:
        credential = (target.user, target.password or "")
    return GrafanaApi.from_url(redact(target.url), credential=credential, timeout=target.timeout)


def _error(target: GrafanaTarget, what: str, exc: Exception) -> GpulensError:
    """One actionable line for a transport or HTTP failure of the call doing `what`."""
    where = redact(target.url)
    status = exc.status_code if isinstance(exc, GrafanaException) else 0
    if status == 401:
        return GpulensError(
            f"Grafana at {where} rejected the credentials (HTTP 401) while {what}: "
            "check --token or --user/--password"
        )
    if status == 403:
        return GpulensError(
            f"Grafana at {where} denied {what} (HTTP 403): the token's role must be Editor or Admin"
        )
    if status == 0:
        return GpulensError(
            f"cannot reach Grafana at {where} ({type(exc).__name__}) while {what}: check --url"
        )
    return GpulensError(f"Grafana at {where} failed while {what}: HTTP {status}")


def _call(target: GrafanaTarget, what: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except (GrafanaException, niquests.exceptions.RequestException) as exc:
        raise _error(target, what, exc) from None


def _get_or_none(target: GrafanaTarget, what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)`, or None when Grafana answers 404."""
    try:
        return fn(*args)
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise _error(target, what, exc) from None
    except (GrafanaException, niquests.exceptions.RequestException) as exc:
        raise _error(target, what, exc) from None


def check_grafana(api: GrafanaApi, target: GrafanaTarget) -> None:
    """GET /api/health: fails clearly when the URL is not a Grafana server."""
    health = _call(target, "checking /api/health", api.client.GET, "/health")
    if not isinstance(health, dict) or "database" not in health:
        raise GpulensError(f"{redact(target.url)} does not look like Grafana (no /api/health)", field="--url")


def datasource_name(api: GrafanaApi, target: GrafanaTarget, uid: str) -> str:
    """The name of Prometheus data source `uid`; a clear error if it is missing or not Prometheus."""
    found = _get_or_none(target, "reading the data source", api.datasource.get_datasource_by_uid, uid)
    if found is None:
        raise GpulensError(f"Grafana has no data source with uid {uid!r}", field="--datasource-uid")
    if found.get("type") != "prometheus":
        raise GpulensError(
            f"data source {uid!r} is of type {found.get('type')!r}, not prometheus", field="--datasource-uid"
        )
    return str(found.get("name", uid))


def folder_uid(api: GrafanaApi, target: GrafanaTarget) -> str:
    """The uid of the folder titled `target.folder`, created (with a stable uid) if missing."""
    folders = _call(target, "listing folders", api.folder.get_all_folders)
    for folder in folders:
        if folder.get("title") == target.folder:
            return str(folder["uid"])
    uid = re.sub(r"[^a-zA-Z0-9_-]+", "-", target.folder.lower()).strip("-")[:40] or "gpulens"
    created = _call(target, "creating the folder", api.folder.create_folder, target.folder, uid)
    return str(created["uid"])


def with_datasource(model: Mapping[str, Any], uid: str | None, name: str | None) -> dict[str, Any]:
    """`model` with its `datasource` variable pointing at data source `uid` (unchanged when None)."""
    out = copy.deepcopy(dict(model))
    if uid is None:
        return out
    for var in out["templating"]["list"]:
        if var["type"] == "datasource":
            var["current"] = {"selected": True, "text": name or uid, "value": uid}
    return out


def _same(stored: dict[str, Any], model: dict[str, Any], folder: str) -> bool:
    mine = {k: v for k, v in model.items() if k not in IGNORED_ON_COMPARE}
    theirs = {k: v for k, v in stored.get("dashboard", {}).items() if k not in IGNORED_ON_COMPARE}
    return mine == theirs and stored.get("meta", {}).get("folderUid") == folder


def push(target: GrafanaTarget, models: Mapping[str, Mapping[str, Any]]) -> list[Pushed]:
    """Create or update every dashboard in `models` in the target folder; returns what happened to each."""
    api = connect(target)
    check_grafana(api, target)
    name = datasource_name(api, target, target.datasource_uid) if target.datasource_uid else None
    folder = folder_uid(api, target)
    results = []
    for model in models.values():
        dashboard = with_datasource(model, target.datasource_uid, name)
        uid = dashboard["uid"]
        stored = _get_or_none(target, f"reading dashboard {uid}", api.dashboard.get_dashboard, uid)
        if stored is not None and _same(stored, dashboard, folder):
            results.append(Pushed(uid, dashboard["title"], "unchanged"))
            continue
        body = {
            "dashboard": dashboard | {"id": None},
            "folderUid": folder,
            "overwrite": True,
            "message": "gpulens dashboards push",
        }
        _call(target, f"saving dashboard {uid}", api.dashboard.update_dashboard, body)
        results.append(Pushed(uid, dashboard["title"], "created" if stored is None else "updated"))
    return results
