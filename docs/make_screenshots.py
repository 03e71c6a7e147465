"""Regenerate the explorer screenshots in docs/screenshots/ from the demo month, as a user sees them.

    .venv/bin/python docs/make_screenshots.py [--out docs/screenshots] [--workdir DIR]

Builds (or reuses) the demo warehouse with `gpulens.demo.build`, serves the explorer on a free local
port, and saves a full-page PNG of each view below from headless Chromium (Debian's `chromium` and
`chromium-driver`, as the browser tests use). Nothing here is a test: it only shows.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.support.browser when run as a script

from gpulens.dashboards.explorer import ids  # noqa: E402
from gpulens.dashboards.explorer.app import ExplorerConfig, ExplorerServer  # noqa: E402
from gpulens.demo.build import build  # noqa: E402
from tests.support.browser import chromium, full_page_screenshot, wait_until  # noqa: E402

# (file name, URL path and query, the element that must be drawn, a script to run before the shot)
VIEWS: tuple[tuple[str, str, str, str], ...] = (
    ("cost-amortized.png", "/cost", ids.COST_CHART, ""),
    ("cost-billed.png", "/cost?basis=billed", ids.COST_BILLED_NOTE, ""),
    ("cost-jobs.png", "/cost?team=ai-research&view=jobs", ids.COST_TABLE, ""),
    ("cost-idle.png", "/cost?view=idle", ids.COST_TABLE, ""),
    ("cost-unallocated.png", "/cost?basis=billed&view=unallocated", ids.COST_TABLE, ""),
    (
        "utilization.png",
        "/utilization?window=7d",
        ids.UTIL_HEATMAP,
        f"document.querySelector('#{ids.UTIL_TABLE} details').open = true;",
    ),
    ("training.png", "/training", ids.TRAIN_LOSS, ""),
    # {other}: another run of the demo, overlaid.
    (
        "training-compare-log-smoothed.png",
        "/training?scale=log&smooth=0.9&x=time&compare={other}",
        ids.TRAIN_LOSS,
        "",
    ),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drawn(driver: object, element_id: str) -> bool:
    """The element is on the page, and if it is a graph, plotly has drawn its traces."""
    return bool(
        driver.execute_script(  # type: ignore[attr-defined]
            f"const e = document.getElementById('{element_id}'); if (!e) return false;"
            "const g = e.querySelector('.js-plotly-plot'); if (g) return !!(g.data && g.data.length);"
            "return e.children.length > 0 || e.textContent.length > 0;"
        )
    )


def settled(driver: object) -> bool:
    return not driver.find_elements("css selector", "[data-dash-is-loading='true']")  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "gpulens-screenshots")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no request log on the terminal
    demo = build(args.workdir / "demo", say=lambda line: print(line, file=sys.stderr))
    args.out.mkdir(parents=True, exist_ok=True)
    server = ExplorerServer(ExplorerConfig(warehouse=demo.warehouse, port=free_port()))
    server.start()
    try:
        server.warm.wait(120)
        with chromium(args.workdir / "profile", args.workdir / "downloads") as driver:
            other = next(p.stem for p in demo.artifacts.run_files if p.stem.startswith("ai-"))
            for name, path, element, before in VIEWS:
                driver.get(server.url + path.format(other=other))  # type: ignore[attr-defined]
                wait_until(partial(drawn, driver, element), timeout=60, what=f"{path}: #{element}")
                wait_until(lambda: settled(driver), timeout=60, what=f"{path}: callbacks")
                if before:
                    driver.execute_script(before)  # type: ignore[attr-defined]
                time.sleep(0.5)  # plotly's transitions
                full_page_screenshot(driver, args.out / name)
                print(args.out / name)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
