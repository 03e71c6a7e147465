"""Rebuild BENCHMARKS.md from the sections each benchmark writes to benchmarks/results/*.md."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["agent", "trainer", "attribution", "ingest_runs", "explorer", "report", "remediation", "gpu"]
HEADER = """# Benchmarks

The performance targets of each issue, measured by the scripts in `benchmarks/` (`make bench` runs
them all; each writes its section to `benchmarks/results/NAME.md`, and `python benchmarks/collect.py`
rebuilds this file). Figures are medians of several runs with the obvious alternative measured in
the same run. Unless a section says otherwise the machine is the development VM: x86_64, 2 vCPU,
24 GiB, no GPU, shared with other builds while these ran (the load is noted where it mattered).
Targets are checked here, never by timed unit tests.
"""


def main() -> None:
    names = ORDER + sorted(p.stem for p in HERE.glob("results/*.md") if p.stem not in ORDER)
    parts = [HEADER]
    for name in names:
        path = HERE / "results" / f"{name}.md"
        if path.exists():
            parts.append(path.read_text().strip() + "\n")
    gpu = HERE / "results" / "gpu.md"
    if gpu.exists() and "gpu" not in names:
        parts.append(gpu.read_text().strip() + "\n")
    (HERE.parent / "BENCHMARKS.md").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
