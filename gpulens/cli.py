"""The `gpulens` command: flags -> environment -> defaults; errors -> exit codes (docs/design.md §2).

Exit codes: 0 success, 1 a handled error (one line on stderr), 2 bad usage (argparse), 130 Ctrl-C.
A package that a command's extra would install, missing, is a handled error naming the extra; any
other ImportError is a bug in gpulens and keeps its traceback (gpulens/extras.py draws the line).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from gpulens import __version__, commands
from gpulens.errors import GpulensError
from gpulens.extras import install_hint, missing_extra


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpulens",
        description="GPU utilization, training health and cost attribution for shared GPU fleets.",
    )
    parser.add_argument("--version", action="version", version=f"gpulens {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{commands.__name__}.{info.name}")
        except ImportError as exc:  # an extra not installed: the other commands still work
            extra = missing_extra(info.name, exc)
            if extra is None:
                raise
            _register_unavailable(sub, info.name, _missing_message(exc, extra))
            continue
        module.register(sub)
    return parser


def _missing_message(exc: ImportError, extra: str) -> str:
    return f"needs the Python package {exc.name!r}, which is not installed: {install_hint(extra)}"


def _register_unavailable(sub: argparse._SubParsersAction, name: str, message: str) -> None:
    """A command whose extra is missing answers with what to install, not a traceback."""
    parser = sub.add_parser(name, help=f"(unavailable: {message})", add_help=False)
    parser.add_argument("rest", nargs=argparse.REMAINDER)

    def unavailable(args: argparse.Namespace) -> int:
        raise GpulensError(message)

    parser.set_defaults(handler=unavailable)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _run(args)
    except GpulensError as exc:
        print(f"gpulens {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    """The handler; a package of the command's extra found missing on the way is a GpulensError."""
    try:
        return int(args.handler(args) or 0)
    except ModuleNotFoundError as exc:
        extra = missing_extra(args.command, exc)
        if extra is None:
            raise  # a gpulens module or an undeclared package: a bug, shown with its traceback
        raise GpulensError(_missing_message(exc, extra)) from None


if __name__ == "__main__":
    sys.exit(main())
