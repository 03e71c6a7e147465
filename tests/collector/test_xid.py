"""XID classification against NVIDIA's catalog (collector/xid_catalog.csv, from Xid-Catalog.xlsx)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from gpulens.collector.xid import ACTIONS, CATALOG, catalog, classify, loses_device

SHARED = Path("/work/shared/data/xid/nvidia_xid_catalog_via_gpud.csv")


@pytest.mark.parametrize(
    ("code", "action", "recoverable"),
    [
        (13, "restart_app", True),  # graphics engine exception: NVIDIA says RESTART_APP
        (31, "restart_app", True),  # GPU memory page fault
        (43, "ignore", True),  # GPU stopped processing: IGNORE
        (48, "reset_gpu", False),  # double-bit ECC: NVIDIA's XID 48 workflow
        (63, "ignore", True),  # row remapping event
        (64, "reset_gpu", False),  # row remapping failure: RESET_GPU
        (74, "investigate", False),  # NVLink error workflow
        (79, "reboot_node", False),  # fallen off the bus: RESTART_BM
        (94, "restart_app", True),  # contained memory error
        (95, "reset_gpu", False),  # uncontained memory error
        (119, "reset_gpu", False),  # GSP RPC timeout
        (151, "reboot_node", False),  # RESTART_VM
    ],
)
def test_documented_codes(code: int, action: str, recoverable: bool) -> None:
    c = classify(code)
    assert (c.action, c.recoverable) == (action, recoverable)


def test_every_catalog_code_is_classified_into_the_spec_actions() -> None:
    table = catalog()
    assert len(table) == 172 and min(table) == 1 and max(table) == 172
    assert {c.action for c in table.values()} <= set(ACTIONS)
    assert classify(79).mnemonic == "ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS"


def test_unknown_code_is_investigate() -> None:
    c = classify(999)
    assert (c.action, c.recoverable) == ("investigate", False)


def test_bundled_catalog_matches_the_shared_copy() -> None:
    if not SHARED.exists():
        pytest.skip("shared data not mounted")
    with SHARED.open() as a, CATALOG.open() as b:
        assert list(csv.reader(a)) == list(csv.reader(b))


def test_only_79_loses_the_device() -> None:
    assert loses_device(79) and not loses_device(48) and not loses_device(13)
