"""The Dash app: a shell (header, navigation, URL), three pages, optional basic auth, a stoppable server.

`create_app(config)` builds everything at call time (no data at import); `ExplorerServer` serves it
on a werkzeug server that another thread can stop (the demo does).
"""

from __future__ import annotations

import base64
import hmac
import logging
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import dash
from dash import Dash, Input, Output, State, dcc, html
from flask import Response, request
from werkzeug.serving import BaseWSGIServer, make_server

from gpulens.dashboards.explorer import ids, urlstate
from gpulens.dashboards.explorer.pages import cost, training, utilization
from gpulens.dashboards.explorer.queries import Queries

log = logging.getLogger(__name__)

PAGES: Mapping[str, tuple[str, ModuleType]] = {
    "/cost": ("Cost", cost),
    "/utilization": ("Utilization", utilization),
    "/training": ("Training", training),
}


@dataclass(frozen=True)
class ExplorerConfig:
    warehouse: Path
    host: str = "127.0.0.1"
    port: int = 8050
    prometheus: str | None = None
    auth: tuple[str, str] | None = None  # (user, password) for HTTP basic auth; None: no auth


def create_app(config: ExplorerConfig, queries: Queries | None = None) -> Dash:
    queries = queries or Queries(config.warehouse, prometheus=config.prometheus)
    app = Dash(
        __name__,
        title="gpulens explorer",
        update_title="",
        suppress_callback_exceptions=True,
        assets_folder=str(Path(__file__).parent / "assets"),
    )
    app.layout = shell
    _register_router(app, queries)
    for _, page in PAGES.values():
        page.register(app, queries)
    if config.auth:
        require_basic_auth(app, *config.auth)
    return app


def shell() -> html.Div:
    nav = [
        dcc.Link(label, href=path, id=f"nav-{path.strip('/')}", className="nav-link")
        for path, (label, _) in PAGES.items()
    ]
    return html.Div(
        className="app",
        children=[
            dcc.Location(id=ids.URL, refresh=False),
            html.Header(
                className="topbar",
                children=[
                    html.Div(
                        className="brand",
                        children=[
                            html.Span("gpulens", className="logo"),
                            html.Span("cost explorer", className="subtitle"),
                        ],
                    ),
                    html.Nav(nav, className="nav"),
                    html.Div(id=ids.FRESHNESS, className="freshness"),
                ],
            ),
            html.Main(
                className="page",
                children=dcc.Loading(
                    html.Div(id=ids.PAGE),
                    id=ids.PAGE_LOADING,
                    type="default",
                    show_initially=True,  # a spinner, not a blank page, while the first view computes
                    target_components={ids.PAGE: "children"},  # type: ignore[arg-type]
                ),
            ),
        ],
    )


def _register_router(app: Dash, queries: Queries) -> None:
    nav_outputs = [Output(f"nav-{path.strip('/')}", "className") for path in PAGES]

    @app.callback(
        Output(ids.PAGE, "children"),
        Output(ids.FRESHNESS, "children"),
        *nav_outputs,
        Input(ids.URL, "pathname"),
        State(ids.URL, "search"),
    )
    def _route(pathname: str | None, search: str | None) -> tuple[Any, ...]:
        return route(queries, pathname, search)


def route(queries: Queries, pathname: str | None, search: str | None) -> tuple[Any, ...]:
    """The page for `pathname` (unknown paths show /cost), the freshness line and the nav classes."""
    path = pathname if pathname is not None and pathname in PAGES else "/cost"
    page = PAGES[path][1].layout(queries, urlstate.parse(search))
    rng = queries.data_range()
    fresh = (
        f"usage to {rng.newest_usage_hour:%Y-%m-%d %H:00} UTC" if rng.newest_usage_hour else "no usage loaded"
    )
    if rng.periods:
        fresh = f"cost {', '.join(rng.periods)} · {fresh}"
    classes = ["nav-link active" if p == path else "nav-link" for p in PAGES]
    return (page, fresh, *classes)


def require_basic_auth(app: Dash, user: str, password: str) -> None:
    """HTTP basic auth on every request (pages, callbacks, assets), compared in constant time."""
    expected = base64.b64encode(f"{user}:{password}".encode()).decode()

    @app.server.before_request
    def _check() -> Response | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic ") and hmac.compare_digest(header[6:].strip(), expected):
            return None
        return Response(
            "authentication required\n", 401, {"WWW-Authenticate": 'Basic realm="gpulens explorer"'}
        )


def _check_bindable(host: str, port: int) -> None:
    """Raise OSError if (host, port) cannot be bound: werkzeug would print and `sys.exit` instead."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


class ExplorerServer:
    """The explorer on a threaded werkzeug server: `start()` in the background, `stop()` from anywhere."""

    def __init__(self, config: ExplorerConfig) -> None:
        self.config = config
        self.queries = Queries(config.warehouse, prometheus=config.prometheus)
        self.app = create_app(config, self.queries)
        self.warm = threading.Event()  # set once the first views' data is cached
        _check_bindable(config.host, config.port)
        self._server: BaseWSGIServer = make_server(config.host, config.port, self.app.server, threaded=True)
        self._thread: threading.Thread | None = None
        self._prewarmer: threading.Thread | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self._server.server_port}"

    def _prewarm(self) -> None:
        try:
            self.queries.prewarm()
        except Exception:
            if not self._stopping:
                log.warning("could not prewarm the explorer's cache", exc_info=True)
        finally:
            self.warm.set()

    def _start_prewarm(self) -> None:
        self._prewarmer = threading.Thread(target=self._prewarm, name="explorer-prewarm", daemon=True)
        self._prewarmer.start()

    def serve_forever(self) -> None:
        """Serves in this thread until interrupted (Ctrl-C), then releases everything (`stop`)."""
        self._start_prewarm()
        try:
            self._server.serve_forever()
        finally:
            self.stop()

    def start(self) -> None:
        self._start_prewarm()
        self._thread = threading.Thread(target=self._server.serve_forever, name="explorer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops serving, cancels running queries and waits for them: DuckDB threads must not be
        running when the interpreter exits (the C++ runtime aborts the process)."""
        self._stopping = True
        if self._thread is not None:
            self._server.shutdown()  # only a loop running in another thread can be asked to stop
            self._thread.join(timeout=5)
        self._server.server_close()
        self.queries.warehouse.interrupt()
        if self._prewarmer is not None:
            self._prewarmer.join(timeout=30)
        self.queries.warehouse.close()


__all__ = ["ExplorerConfig", "ExplorerServer", "create_app", "dash"]
