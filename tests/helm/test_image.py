"""The Dockerfile, read as text (no container engine on this machine to build it): two stages, a final
stage with no build tools that runs `gpulens` as a non-root user, and a build context that holds every
file the Dockerfile copies and nothing else."""

from __future__ import annotations

import fnmatch
import json
import re

from tests.support.servers import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    )
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in joined.splitlines()
        if line.strip()
    ]


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions(DOCKERFILE):
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def test_multi_stage_with_a_slim_python_base() -> None:
    build, final = stages()
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.1[0-9]+-slim", DOCKERFILE)
    assert build[0][1].split()[0] == final[0][1] == "${PYTHON_IMAGE}"


def test_final_stage_runs_gpulens_as_non_root_without_build_tools() -> None:
    final = stages()[-1]
    text = " ".join(args for _, args in final)
    assert not re.search(r"\b(apt-get install|apk add|pip install|gcc|g\+\+|make|build-essential)\b", text)
    user = [args for op, args in final if op == "USER"]
    assert user and all(int(part) != 0 for part in user[-1].split(":"))
    assert json.loads(next(args for op, args in final if op == "ENTRYPOINT")) == ["gpulens"]
    copies = [args for op, args in final if op == "COPY"]
    assert copies == ["--from=build /opt/gpulens /opt/gpulens"]


def test_the_image_installs_every_component_but_not_torch() -> None:
    build = stages()[0]
    copied = {args.split()[0].rstrip("/") for op, args in build if op == "COPY" for args in [args]}
    setup = (REPO / "setup.py").read_text()
    folders = set(re.findall(r'"gpulens(?:\.[a-z]+)?": "([a-z]+)"', setup))
    assert folders and folders <= copied
    extras = re.search(r'"\.\[([a-z,]+)\]"', DOCKERFILE)
    assert extras is not None
    pyproject = (REPO / "pyproject.toml").read_text()
    declared = set(
        re.findall(
            r"^([a-z]+) = \[", pyproject.split("[project.optional-dependencies]")[1].split("\n[")[0], re.M
        )
    )
    assert set(extras.group(1).split(",")) <= set(declared) and "trainer" not in extras.group(1)
    # the core is empty (docs/design.md §1): every component the chart runs needs its extra in the image
    assert declared - set(extras.group(1).split(",")) == {"trainer", "demo", "all", "dev"}


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; `!` re-includes."""
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.replace("**/", "")) for p in prefixes
        ):
            verdict = not negate
    return verdict


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_more() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [args.split()[0] for op, args in stages()[0] if op == "COPY"]
    for source in " ".join(sources).split():
        assert (REPO / source).exists(), source
        assert not ignored(source.rstrip("/"), patterns), f"{source} is excluded by .dockerignore"
    for secret in (
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
        "gpulens.duckdb",
        "collector/__pycache__/agent.cpython-311.pyc",
    ):
        assert ignored(secret, patterns), secret
