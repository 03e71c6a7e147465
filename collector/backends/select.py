"""`--backend auto|nvml|dcgm|sim` -> an open backend; `auto` is DCGM, else NVML, else a clear error."""

from __future__ import annotations

import logging
from collections.abc import Callable

from gpulens.collector.backends.base import BackendUnavailable, GpuBackend

log = logging.getLogger(__name__)

BACKENDS = ("auto", "nvml", "dcgm", "sim")


def open_nvml() -> GpuBackend:
    from gpulens.collector.backends.nvml import NvmlBackend

    return NvmlBackend()


def open_dcgm() -> GpuBackend:
    """DCGM for the fields, with NVML's process lists beside it when NVML answers (job mapping, trust)."""
    from gpulens.collector.backends.dcgm import DcgmBackend, PydcgmSession
    from gpulens.collector.backends.nvml import NvmlProcesses

    session = PydcgmSession()  # first: without DCGM nothing below is needed
    try:
        processes: NvmlProcesses | None = NvmlProcesses()
    except BackendUnavailable as exc:
        log.warning("DCGM without NVML processes (%s): no process mapping, trainer datagrams unverified", exc)
        processes = None
    try:
        return DcgmBackend(session, processes=processes)
    except BackendUnavailable:
        session.close()
        if processes is not None:
            processes.close()
        raise


def open_backend(
    name: str,
    sim: Callable[[], GpuBackend],
    nvml: Callable[[], GpuBackend] = open_nvml,
    dcgm: Callable[[], GpuBackend] = open_dcgm,
) -> GpuBackend:
    """Open the named backend; `auto` tries DCGM then NVML and never falls back to sim silently."""
    if name == "sim":
        return sim()
    if name == "nvml":
        return nvml()
    if name == "dcgm":
        return dcgm()
    reasons = []
    for label, opener in (("DCGM", dcgm), ("NVML", nvml)):
        try:
            return opener()
        except BackendUnavailable as exc:
            log.debug("auto: %s unavailable: %s", label, exc)
            reasons.append(f"{label}: {exc.message}")
    raise BackendUnavailable(
        f"no GPU backend answered ({'; '.join(reasons)}); run with --backend sim for a simulated fleet"
    )
