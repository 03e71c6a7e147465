"""The obvious alternative, for bench_agent.py: a /metrics whose every scrape reads the backend inline.

Same sim backend, collector, renderer and HTTP server as `gpulens agent`; the only difference is
that the collector's snapshot is `sampler.tick()` (all 8 GPUs read during the scrape) instead of
the sampler thread's latest snapshot. Run: python agent_inline_server.py PORT SOCKET
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from gpulens.collector.backends.sim import SimBackend
from gpulens.collector.exposition import AgentCollector, AgentIdentity, build_registry, make_server
from gpulens.collector.sampler import Sampler
from gpulens.collector.socket import DatagramServer
from gpulens.collector.trainstats import TrainStats


def main() -> int:
    port, sock = int(sys.argv[1]), Path(sys.argv[2])
    sys.setswitchinterval(0.001)  # as `gpulens agent` does
    backend = SimBackend(8)
    sampler = Sampler(backend)
    stats = TrainStats()
    collector = AgentCollector(
        AgentIdentity("inline", "sim"), sampler.tick, stats
    )  # reads the backend per scrape
    server = make_server("127.0.0.1", port, build_registry(collector), sampler, stale_after=1e9)
    datagrams = DatagramServer(sock, stats.ingest_many)
    datagrams.start()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        datagrams.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
