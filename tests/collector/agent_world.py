"""An in-process agent with injected time: the golden and render tests share it."""

from __future__ import annotations

import json

from prometheus_client.registry import CollectorRegistry

from gpulens.collector.backends.sim import SimBackend, SimFault
from gpulens.collector.exposition import AgentCollector, AgentIdentity, build_registry
from gpulens.collector.mapping.static import StaticMapper
from gpulens.collector.mapping.trainer import TrainerMapper
from gpulens.collector.sampler import Sampler
from gpulens.collector.trainstats import TrainStats


class Clock:
    def __init__(self, t: float = 1000.0, step: float = 0.0) -> None:
        self.t, self.step = t, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def seeded_registry(ranks: int = 4, ticks: int = 3) -> CollectorRegistry:
    """8 sim GPUs (seed 42), XID 79 on GPU 3 after 2 s, `ranks` trainer ranks on GPU 7, `ticks` 1 s ticks."""
    clock, perf = Clock(), Clock(0.0, 0.0015)
    sim = SimBackend(
        gpus=8, model="h100-sxm", seed=42, faults=[SimFault(79, 3, 2.0), SimFault(13, 5, 1.0)], clock=clock
    )
    trainer = TrainerMapper(alive=lambda pid: True, clock=clock)
    stats = TrainStats(on_step=trainer.observe)
    sampler = Sampler(sim, [StaticMapper({"team": "platform"}), trainer], clock=clock, perf=perf)
    for rank in range(ranks):
        for step in range(3):
            stats.ingest(
                json.dumps(
                    {
                        "v": 1,
                        "kind": "step",
                        "job_id": "golden-job",
                        "team": "golden-team",
                        "rank": rank,
                        "gpu": 7,
                        "pid": 4242,
                        "step": step,
                        "ts": 1795600000.0 + step,
                        "step_seconds": 0.25 * (step + 1),
                        "tokens": 4096,
                        "loss": 2.5 - step / 10,
                        "mfu": 0.4,
                    }
                ).encode()
            )
    for record in (
        {
            "v": 1,
            "kind": "run",
            "job_id": "golden-job",
            "team": "golden-team",
            "rank": 0,
            "event": "start",
            "attempt": 2,
            "ts": 1795599990.0,
            "world_size": ranks,
        },
        {
            "v": 1,
            "kind": "phase",
            "job_id": "golden-job",
            "team": "golden-team",
            "rank": 0,
            "attempt": 2,
            "phase": "checkpoint_save",
            "start": 1795600100.0,
            "end": 1795600220.5,
            "step": 2,
        },
        {
            "v": 1,
            "kind": "phase",
            "job_id": "golden-job",
            "team": "golden-team",
            "rank": 0,
            "attempt": 2,
            "phase": "warmup",
            "start": 1795600000.0,
            "end": 1795600001.25,
        },
    ):
        stats.ingest(json.dumps(record).encode())
    stats.ingest(b"{garbage")
    stats.ingest(
        json.dumps(
            {
                "v": 1,
                "kind": "anomaly",
                "job_id": "golden-job",
                "team": "golden-team",
                "rank": 0,
                "step": 2,
                "anomaly": "spike",
                "loss": 4.7,
            }
        ).encode()
    )
    for _ in range(ticks):
        clock.t += 1.0
        sampler.tick()
    identity = AgentIdentity(
        "golden-node", "sim", sim.capabilities().names(), "i-0abc", "p5.48xlarge", "train-east"
    )
    return build_registry(AgentCollector(identity, lambda: sampler.snapshot, stats))
