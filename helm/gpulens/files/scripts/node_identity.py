"""Writes this node's EC2 instance id and instance type for the gpulens agent (the chart's
agent.nodeIdentity).

    node_identity.py NODE_NAME OUT_DIR [--api URL] [--token FILE] [--ca FILE]

Reads the Node object from the API server: `spec.providerID` (`aws:///us-east-1a/i-0abc...`) gives the
instance id and the well-known label `node.kubernetes.io/instance-type` the type. They go to
OUT_DIR/instance-id and OUT_DIR/instance-type (empty files off AWS), which the agent's container passes
as --instance-id/--instance-type: gpulens_node_info is what joins GPU usage to CUR resource ids
(docs/design.md §6),
and a DaemonSet cannot set per-node flags any other way (the downward API does not expose the Node).
Runs in an init container that alone mounts the ServiceAccount token; standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SA = Path("/var/run/secrets/kubernetes.io/serviceaccount")
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


def instance_id(provider_id: str) -> str:
    """`aws:///us-east-1a/i-0abc` -> `i-0abc`; anything not on AWS -> ""."""
    if not provider_id.startswith("aws://"):
        return ""
    last = provider_id.rstrip("/").rsplit("/", 1)[-1]
    return last if last.startswith("i-") else ""


def read_node(api: str, name: str, token: str, ca: Path | None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{api}/api/v1/nodes/{name}", headers={"Authorization": f"Bearer {token}"}
    )
    context = ssl.create_default_context(cafile=str(ca)) if ca and api.startswith("https") else None
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        node: dict[str, Any] = json.load(response)
    return node


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("node")
    parser.add_argument("out", type=Path)
    host, port = (
        os.environ.get("KUBERNETES_SERVICE_HOST", ""),
        os.environ.get("KUBERNETES_SERVICE_PORT", "443"),
    )
    parser.add_argument(
        "--api", default=f"https://{host}:{port}", help="API server URL (default: in-cluster)"
    )
    parser.add_argument("--token", type=Path, default=SA / "token")
    parser.add_argument("--ca", type=Path, default=SA / "ca.crt")
    args = parser.parse_args(argv)
    try:
        node = read_node(args.api, args.node, args.token.read_text().strip(), args.ca)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        print(f"node_identity: error: cannot read node {args.node} from {args.api}: {exc}", file=sys.stderr)
        return 1
    labels = node.get("metadata", {}).get("labels", {})
    (args.out / "instance-id").write_text(instance_id(node.get("spec", {}).get("providerID", "")))
    (args.out / "instance-type").write_text(labels.get(INSTANCE_TYPE_LABEL, ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
