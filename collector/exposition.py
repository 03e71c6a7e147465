"""/metrics, /healthz and the profiler-lock endpoint over HTTP, from the latest snapshot only.

`AgentCollector` is a custom prometheus_client Collector on a private registry: each scrape formats
the sampler's published `Snapshot` and a copy of the trainer aggregates, and never calls the
backend. The HTTP server negotiates OpenMetrics from the Accept header, renders with
`render.render` (same formats as prometheus_client, faster), and answers:
  GET  /metrics                       the families of docs/design.md §3
  GET  /healthz                       200 "ok" while the sampler is fresh, 503 if it stalled
  POST /profiling/pause?seconds=N     stop reading profiling fields for N s (default 600, at most a day)
  POST /profiling/resume              read them again
The POST endpoints change state: with an admin token they need `Authorization: Bearer <token>`,
without one they answer loopback clients only (403 to anyone else), so a scrape port on 0.0.0.0
cannot be used to switch profiling off.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import threading
import urllib.parse
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample

from gpulens import __version__
from gpulens import metrics as M
from gpulens.collector.backends.base import GpuReading
from gpulens.collector.histogram import Histogram
from gpulens.collector.render import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, render, wants_openmetrics
from gpulens.collector.sampler import COUNTED, HELD, INTEGRATED, XID, Sampler, Snapshot
from gpulens.collector.trainstats import RankStats, TrainKey, TrainStats
from gpulens.collector.xid import classify
from gpulens.httpserver import GpulensHTTPServer

log = logging.getLogger(__name__)

# (catalog spec, GpuReading attribute) for the gauges read straight off a reading.
GAUGES = (
    (M.GPU_UTILIZATION, "utilization_ratio"),
    (M.GPU_SM_ACTIVE, "sm_active_ratio"),
    (M.GPU_SM_OCCUPANCY, "sm_occupancy_ratio"),
    (M.GPU_TENSOR_ACTIVE, "tensor_active_ratio"),
    (M.GPU_DRAM_ACTIVE, "dram_active_ratio"),
    (M.GPU_MEMORY_USED, "memory_used_bytes"),
    (M.GPU_MEMORY_TOTAL, "memory_total_bytes"),
    (M.GPU_POWER, "power_watts"),
    (M.GPU_TEMPERATURE, "temperature_celsius"),
    (M.GPU_SM_CLOCK, "sm_clock_hertz"),
)
INTEGRAL_SPECS = dict(
    zip(
        INTEGRATED,
        (
            M.GPU_UTILIZATION_SECONDS,
            M.GPU_SM_ACTIVE_SECONDS,
            M.GPU_TENSOR_ACTIVE_SECONDS,
            M.GPU_DRAM_ACTIVE_SECONDS,
        ),
        strict=True,
    )
)
TRAIN_SPECS = (
    M.TRAIN_STEPS,
    M.TRAIN_TOKENS,
    M.TRAIN_LOSS,
    M.TRAIN_MFU,
    M.TRAIN_LAST_STEP,
    M.TRAIN_STEP_SECONDS,
    M.TRAIN_ATTEMPT,
    M.TRAIN_PHASE_SECONDS,
)
MAX_PAUSE_SECONDS = 86_400.0
COUNTER_SPECS = {
    "energy_joules": (M.GPU_ENERGY, {}),
    "ecc_corrected": (M.GPU_ECC_ERRORS, {"type": "corrected"}),
    "ecc_uncorrected": (M.GPU_ECC_ERRORS, {"type": "uncorrected"}),
}


@dataclass(frozen=True)
class AgentIdentity:
    """Static labels of the agent and its node (gpulens_agent_info, gpulens_node_info)."""

    node: str
    backend: str
    capabilities: tuple[str, ...] = ()
    instance_id: str = ""
    instance_type: str = ""
    cluster: str = ""
    trust: str = "off"  # how trainer datagrams are tied to GPUs: pid, uid or off (collector/trust.py)


def family(spec: M.MetricSpec) -> Metric:
    """An empty family for a catalog entry; counters drop `_total` from the family name."""
    name = spec.name[: -len("_total")] if spec.type == "counter" else spec.name
    if spec.type == "info":
        name = spec.name[: -len("_info")]
    return Metric(name, spec.help, spec.type)


def _job_labels(job_id: str | None, team: str | None) -> dict[str, str]:
    out = {}
    if job_id:
        out["job_id"] = job_id
    if team:
        out["team"] = team
    return out


class AgentCollector(Collector):
    """Formats the latest snapshot; `describe()` is empty so registration never calls collect()."""

    def __init__(self, identity: AgentIdentity, snapshot: Callable[[], Snapshot], train: TrainStats) -> None:
        self.identity = identity
        self._snapshot = snapshot
        self._train = train
        self._lock = threading.Lock()
        # Caches: the families of the last snapshot (it changes once per --interval), and each
        # rank's samples until its version changes; unchanged Sample objects render from a memo.
        self._gpu_cache: tuple[Snapshot | None, list[Metric]] = (None, [])
        self._rank_cache: dict[TrainKey, tuple[int, dict[str, list[Sample]]]] = {}

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        with self._lock:
            cached_snap, fams = self._gpu_cache
            if snap is not cached_snap:
                base = {r.identity.uuid: self._gpu_labels(r) for r in snap.readings}
                fams = [
                    *self._agent_families(snap),
                    *self._gauge_families(snap, base),
                    *self._counter_families(snap, base),
                ]
                self._gpu_cache = (snap, fams)
            train = list(self._train_families())
        yield from fams
        yield from train

    def _gpu_labels(self, r: GpuReading) -> dict[str, str]:
        d = r.identity
        labels = {"node": self.identity.node, "gpu": str(d.index), "uuid": d.uuid, "model": d.model}
        if d.mig:
            labels["mig"] = d.mig
        return labels

    def _agent_families(self, snap: Snapshot) -> Iterator[Metric]:
        ident = self.identity
        info = family(M.AGENT_INFO)
        info.add_sample(
            M.AGENT_INFO.name,
            {
                "version": __version__,
                "backend": ident.backend,
                "node": ident.node,
                "capabilities": ",".join(ident.capabilities),
                "profiling": "paused" if snap.profiling_paused else "on",
                "trust": ident.trust,
            },
            1.0,
        )
        node = family(M.NODE_INFO)
        node.add_sample(
            M.NODE_INFO.name,
            {
                "node": ident.node,
                "instance_id": ident.instance_id,
                "instance_type": ident.instance_type,
                "cluster": ident.cluster,
            },
            1.0,
        )
        hist = family(M.AGENT_SAMPLE_SECONDS)
        _histogram(hist, M.AGENT_SAMPLE_SECONDS.name, {"node": ident.node}, snap.samples)
        yield from (info, node, hist)

    def _gauge_families(self, snap: Snapshot, base: dict[str, dict[str, str]]) -> Iterator[Metric]:
        up = family(M.GPU_UP)
        fams = [(spec, attr, family(spec)) for spec, attr in GAUGES]
        for r in snap.readings:
            labels = {**base[r.identity.uuid], **_job_labels(r.job_id, r.team)}
            up.add_sample(M.GPU_UP.name, labels, 1.0 if r.up else 0.0)
            for spec, attr, fam in fams:
                value = getattr(r, attr)
                if value is not None:  # unsupported: the series is absent, never 0
                    fam.add_sample(spec.name, labels, value)
        yield up
        yield from (fam for _spec, _attr, fam in fams if fam.samples)

    def _counter_families(self, snap: Snapshot, base: dict[str, dict[str, str]]) -> Iterator[Metric]:
        fams: dict[str, Metric] = {}

        def add(spec: M.MetricSpec, labels: dict[str, str], value: float) -> None:
            fam = fams.get(spec.name)
            if fam is None:
                fam = fams[spec.name] = family(spec)
            fam.add_sample(spec.name, labels, value)

        order = {r.identity.uuid: n for n, r in enumerate(snap.readings)}  # devices in reading order
        for key, value in sorted(snap.counters.items(), key=lambda kv: (order.get(kv[0].device, -1), kv[0])):
            if key.device not in base:
                continue
            labels = {**base[key.device], **_job_labels(key.job_id, key.team)}
            what = key.what
            if what == HELD:
                add(M.GPU_HELD_SECONDS, labels, value)
            elif what in INTEGRAL_SPECS:
                add(INTEGRAL_SPECS[what], labels, value)
            elif what in COUNTED:
                spec, extra = COUNTER_SPECS[what]
                add(spec, {**labels, **extra}, value)
            elif what == XID:
                xid = classify(key.xid)
                add(
                    M.GPU_XID_ERRORS,
                    {
                        **labels,
                        "xid": str(xid.code),
                        "recoverable": str(xid.recoverable).lower(),
                        "action": xid.action,
                    },
                    value,
                )
        yield from fams.values()

    def _rank_samples(self, key: TrainKey, s: RankStats) -> dict[str, list[Sample]]:
        """Every sample of one rank, by family name (built once per rank version)."""
        job_id, team, rank, gpu = key
        labels = {"node": self.identity.node, "job_id": job_id, "team": team, "rank": rank, "gpu": gpu}
        out: dict[str, list[Sample]] = {spec.name: [] for spec in TRAIN_SPECS}
        stepped = s.steps > 0  # a rank seen only through run/phase records has no step series
        for spec, value in (
            (M.TRAIN_STEPS, s.steps if stepped else None),
            (M.TRAIN_TOKENS, s.tokens if stepped else None),
            (M.TRAIN_LOSS, s.loss),
            (M.TRAIN_MFU, s.mfu),
            (M.TRAIN_LAST_STEP, s.last_ts),
            (M.TRAIN_ATTEMPT, s.attempt),
        ):
            if value is not None:
                out[spec.name].append(Sample(spec.name, labels, value))
        if stepped:
            hist = family(M.TRAIN_STEP_SECONDS)
            _histogram(hist, M.TRAIN_STEP_SECONDS.name, labels, s.step)
            out[M.TRAIN_STEP_SECONDS.name] = hist.samples
        phases = out[M.TRAIN_PHASE_SECONDS.name]
        for phase, seconds in sorted(s.phases.items()):
            phases.append(Sample(M.TRAIN_PHASE_SECONDS.name, {**labels, "phase": phase}, seconds))
        return out

    def _train_families(self) -> Iterator[Metric]:
        known = {k: v for k, (v, _samples) in self._rank_cache.items()}
        ranks, anomalies, results = self._train.copy(known)
        cache = {}
        for key, stats in ranks.items():
            if isinstance(stats, RankStats):
                cache[key] = (stats.version, self._rank_samples(key, stats))
            else:
                cache[key] = self._rank_cache[key]
        self._rank_cache = cache
        node = self.identity.node
        for spec in TRAIN_SPECS:
            fam = family(spec)
            for _version, samples in cache.values():
                fam.samples.extend(samples[spec.name])
            if fam.samples:
                yield fam
        anom = family(M.TRAIN_ANOMALIES)
        for (job_id, team, rank, gpu, kind), n in anomalies.items():
            anom.add_sample(
                M.TRAIN_ANOMALIES.name,
                {"node": node, "job_id": job_id, "team": team, "rank": rank, "gpu": gpu, "kind": kind},
                n,
            )
        dgrams = family(M.AGENT_DATAGRAMS)
        for result, n in sorted(results.items()):
            dgrams.add_sample(M.AGENT_DATAGRAMS.name, {"result": result}, n)
        if anom.samples:
            yield anom
        yield dgrams


def _histogram(fam: Metric, name: str, labels: dict[str, str], hist: Histogram) -> None:
    for bound, n in zip((*hist.bounds, math.inf), hist.cumulative(), strict=True):
        le = "+Inf" if bound == math.inf else repr(bound)
        fam.add_sample(f"{name}_bucket", {**labels, "le": le}, float(n))
    fam.add_sample(f"{name}_count", labels, float(hist.count))
    fam.add_sample(f"{name}_sum", labels, hist.total)


def build_registry(collector: AgentCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


class AgentHTTPServer(GpulensHTTPServer):
    # Backlog, connection timeout, connection cap, quiet hang-ups: gpulens/httpserver.py.
    daemon_threads = True
    allow_reuse_address = True


class MetricsPage:
    """The /metrics body, rendered again only when `generation()` changes (a new tick, new datagrams).

    Prometheus HA pairs and dashboards scrape the same state repeatedly; they get the bytes already made.
    """

    def __init__(self, registry: CollectorRegistry, generation: Callable[[], Hashable] | None) -> None:
        self._registry = registry
        self._generation = generation
        self._lock = threading.Lock()
        self._cached: dict[bool, tuple[Hashable, bytes]] = {}

    def body(self, openmetrics: bool) -> bytes:
        if self._generation is None:
            return render(self._registry.collect(), openmetrics=openmetrics)
        generation = self._generation()
        with self._lock:
            hit = self._cached.get(openmetrics)
            if hit is not None and hit[0] == generation:
                return hit[1]
        body = render(self._registry.collect(), openmetrics=openmetrics)
        with self._lock:
            self._cached[openmetrics] = (generation, body)
        return body


def agent_generation(sampler: Sampler, train: TrainStats) -> Callable[[], Hashable]:
    """What a /metrics body depends on: the snapshot (tick time and count) and the datagrams seen."""
    return lambda: (sampler.snapshot.t, sampler.snapshot.samples.count, train.generation)


def pause_seconds(query: dict[str, list[str]]) -> float:
    """The `seconds` of a pause request: finite, above 0 and at most a day; ValueError otherwise."""
    seconds = float(query.get("seconds", ["600"])[0])
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_PAUSE_SECONDS):
        raise ValueError(seconds)
    return seconds


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.removeprefix("::ffff:")).is_loopback
    except ValueError:
        return False


def make_server(
    host: str,
    port: int,
    registry: CollectorRegistry,
    sampler: Sampler,
    stale_after: float,
    generation: Callable[[], Hashable] | None = None,
    admin_token: str | None = None,
) -> AgentHTTPServer:
    """The HTTP server (not started); `stale_after` seconds without a tick makes /healthz 503.

    `admin_token`: the bearer token the POST endpoints need; None lets loopback clients only.
    """
    page = MetricsPage(registry, generation)
    expected = f"Bearer {admin_token}".encode() if admin_token else None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            if path == "/metrics":
                om = wants_openmetrics(self.headers.get("Accept", ""))
                body = page.body(om)
                self._send(200, body, OPENMETRICS_CONTENT_TYPE if om else TEXT_CONTENT_TYPE)
            elif path == "/healthz":
                age = sampler.age()
                ok = age <= stale_after
                self._send(200 if ok else 503, b"ok\n" if ok else f"sampler stalled {age:.1f}s\n".encode())
            else:
                self._send(404, b"not found: try /metrics or /healthz\n")

        do_HEAD = do_GET

        def _allowed(self) -> bool:
            if expected is None:
                return _loopback(str(self.client_address[0]))
            given = self.headers.get("Authorization", "").encode()
            return hmac.compare_digest(given, expected)

        def do_POST(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            if url.path not in ("/profiling/pause", "/profiling/resume"):
                self._send(404, b"not found\n")
            elif not self._allowed():
                log.warning("refused %s from %s: no valid admin token", url.path, self.address_string())
                self._send(403, b"forbidden: needs the agent's admin token (or a loopback client)\n")
            elif url.path == "/profiling/pause":
                try:
                    seconds = pause_seconds(query)
                except ValueError:
                    self._send(400, b"seconds must be a number above 0 and at most 86400\n")
                    return
                sampler.pause_profiling(seconds)
                self._send(200, f"profiling paused for {seconds:g}s\n".encode())
            else:
                sampler.resume_profiling()
                self._send(200, b"profiling resumed\n")

    return AgentHTTPServer((host, port), Handler)


def serve_in_thread(server: AgentHTTPServer) -> threading.Thread:
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="gpulens-http", daemon=True
    )
    thread.start()
    return thread
