"""A small stand-in for Grafana's HTTP API (no real Grafana can be installed here): the endpoints
`gpulens dashboards push` calls, with Grafana's status codes, and a log of every request it got.

Implemented: GET /api/health; GET /api/datasources/uid/:uid; GET/POST /api/folders;
GET /api/dashboards/uid/:uid; POST /api/dashboards/db (412 on an existing uid without overwrite).
Auth: `Authorization: Bearer <token>` or basic auth; anything else is 401, as Grafana does.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.http_server import serve_http

TOKEN = "glsa_test_token"
USER, PASSWORD = "admin", "s3cret"


@dataclass
class Request:
    method: str
    path: str
    authorization: str
    body: Any


@dataclass
class State:
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST"]


def _authorized(header: str) -> bool:
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return header in (f"Bearer {TOKEN}", f"Basic {basic}")


class Handler(BaseHTTPRequestHandler):
    state: State

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.state.requests.append(
            Request(self.command, self.path, self.headers.get("Authorization", ""), body)
        )
        return body

    def do_GET(self) -> None:
        self._record()
        if self.path == "/api/health":
            return self._reply(200, {"commit": "test", "database": "ok", "version": "11.6.0"})
        if not _authorized(self.headers.get("Authorization", "")):
            return self._reply(401, {"message": "Unauthorized"})
        if self.path == "/api/folders":
            return self._reply(200, list(self.state.folders.values()))
        if self.path.startswith("/api/datasources/uid/"):
            found = self.state.datasources.get(self.path.rsplit("/", 1)[1])
            return (
                self._reply(200, found) if found else self._reply(404, {"message": "Data source not found"})
            )
        if self.path.startswith("/api/dashboards/uid/"):
            found = self.state.dashboards.get(self.path.rsplit("/", 1)[1])
            return self._reply(200, found) if found else self._reply(404, {"message": "Dashboard not found"})
        return self._reply(404, {"message": "Not found"})

    def do_POST(self) -> None:
        body = self._record()
        if not _authorized(self.headers.get("Authorization", "")):
            return self._reply(401, {"message": "Unauthorized"})
        if self.path == "/api/folders":
            if any(f["title"] == body["title"] for f in self.state.folders.values()):
                return self._reply(409, {"message": "a folder with the same name already exists"})
            folder = {"id": len(self.state.folders) + 1, "uid": body["uid"], "title": body["title"]}
            self.state.folders[body["uid"]] = folder
            return self._reply(200, folder)
        if self.path == "/api/dashboards/db":
            return self._save(body)
        return self._reply(404, {"message": "Not found"})

    def _save(self, body: dict[str, Any]) -> None:
        dashboard, folder = body["dashboard"], body.get("folderUid")
        existing = self.state.dashboards.get(dashboard["uid"])
        if existing and not body.get("overwrite"):
            return self._reply(
                412,
                {"message": "The dashboard has been changed by someone else", "status": "version-mismatch"},
            )
        if folder not in self.state.folders:
            return self._reply(400, {"message": "folder not found"})
        version = existing["dashboard"]["version"] + 1 if existing else 1
        stored = dashboard | {"id": 7, "version": version}
        self.state.dashboards[dashboard["uid"]] = {"dashboard": stored, "meta": {"folderUid": folder}}
        self._reply(
            200,
            {
                "id": 7,
                "uid": dashboard["uid"],
                "url": f"/d/{dashboard['uid']}",
                "status": "success",
                "version": version,
            },
        )


@contextlib.contextmanager
def run_grafana(state: State) -> Iterator[str]:
    """Serve `state` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    with serve_http(type("BoundHandler", (Handler,), {"state": state})) as url:
        yield url
