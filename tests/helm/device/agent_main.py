"""`gpulens agent` without building the whole CLI (whose other commands need packages the device lacks)."""

from __future__ import annotations

import argparse
import sys

from gpulens.commands import agent

parser = argparse.ArgumentParser()
agent.register(parser.add_subparsers())
args = parser.parse_args(sys.argv[1:])
sys.exit(args.handler(args))
