"""XID classification: NVIDIA's XID catalog -> (recoverable, action) for gpulens_gpu_xid_errors_total.

Source: NVIDIA's Xid-Catalog.xlsx, published with "Analyzing Xid Catalog"
(https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html), as transcribed by
leptonai/gpud `components/accelerator/nvidia/xid/catalog_generated.go` (Apache-2.0, commit
4a8de33a3f02e207f39e9023d67125592d599731) into `xid_catalog.csv` beside this module (columns
`code, mnemonic, description, immediate_resolution, investigatory_resolution`, XIDs 1-172).

NVIDIA's "immediate resolution" vocabulary is mapped onto the five docs/design.md §3 actions:

| NVIDIA resolution | action | recoverable |
|---|---|---|
| IGNORE | ignore | true |
| RESTART_APP | restart_app | true (the application recovers by restarting) |
| RESET_GPU | reset_gpu | false |
| RESTART_BM, RESTART_VM | reboot_node | false (79: fallen off the bus) |
| WORKFLOW_XID_48 (double-bit ECC) | reset_gpu | false: NVIDIA's workflow resets the GPU to remap the row |
| WORKFLOW_XID_45 (preemptive cleanup) | ignore | true: NVIDIA says "Not solo: IGNORE (follow other Xid)" |
| CONTACT_SUPPORT, WORKFLOW_NVLINK*, CHECK_*, UPDATE_SWFW, XID_154, blank | investigate | false |

An XID the catalog does not know is `investigate`, not recoverable.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CATALOG = Path(__file__).with_name("xid_catalog.csv")

RESOLUTION_ACTIONS: dict[str, tuple[str, bool]] = {
    "IGNORE": ("ignore", True),
    "RESTART_APP": ("restart_app", True),
    "RESET_GPU": ("reset_gpu", False),
    "RESTART_BM": ("reboot_node", False),
    "RESTART_VM": ("reboot_node", False),
    "WORKFLOW_XID_48": ("reset_gpu", False),
    "WORKFLOW_XID_45": ("ignore", True),
}
ACTIONS = ("restart_app", "reset_gpu", "reboot_node", "ignore", "investigate")


@dataclass(frozen=True)
class XidClass:
    """One XID's classification: NVIDIA's mnemonic and resolution, and the action we export."""

    code: int
    mnemonic: str
    description: str
    resolution: str  # NVIDIA's immediate resolution, verbatim ("" where the catalog leaves it blank)
    action: str  # one of ACTIONS
    recoverable: bool


def classify_resolution(resolution: str) -> tuple[str, bool]:
    """(action, recoverable) for one of NVIDIA's immediate-resolution words."""
    return RESOLUTION_ACTIONS.get(resolution.strip(), ("investigate", False))


@cache
def catalog(path: Path = CATALOG) -> dict[int, XidClass]:
    """Every XID of the catalog file, by code."""
    out: dict[int, XidClass] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            code = int(row["code"])
            action, recoverable = classify_resolution(row["immediate_resolution"])
            out[code] = XidClass(
                code,
                " ".join(row["mnemonic"].split()),
                row["description"].strip(),
                row["immediate_resolution"].strip(),
                action,
                recoverable,
            )
    return out


def classify(code: int) -> XidClass:
    """The classification of XID `code`; unknown codes are `investigate`, not recoverable."""
    known = catalog().get(code)
    if known is not None:
        return known
    return XidClass(code, "UNKNOWN", "not in NVIDIA's XID catalog", "", "investigate", False)


def loses_device(code: int) -> bool:
    """True for XIDs after which the device stops answering (79: fallen off the bus)."""
    return code == 79
