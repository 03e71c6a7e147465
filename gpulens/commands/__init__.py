"""One module per top-level subcommand; each exposes `register(subparsers) -> None`.

`gpulens.cli` discovers the modules here, so a component adds its command by adding a file,
without touching the others. A handler receives the parsed `argparse.Namespace` and returns an
exit code; it raises `GpulensError` for handled failures.
"""
