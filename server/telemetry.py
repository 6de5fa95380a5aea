"""Prometheus metrics (GET /metrics) and one structured log line per request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
)

from chains.backends.engine import Completion, Observer

log = logging.getLogger("hfchain.access")
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300)
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}  # any other is counted as "other"


class Metrics:
    """The service's metrics, in a registry of their own (one per app)."""

    def __init__(
        self, replica: str = "-", model: str = "-", runtime: Callable[[], str] = lambda: "-"
    ) -> None:
        self.registry = r = CollectorRegistry()
        r.register(_ReplicaInfo(replica, model, runtime))
        GCCollector(registry=r)  # python_gc_*: collections resume once the model is loaded
        ProcessCollector(registry=r)  # process_*: resident memory (model, KV and prefix caches), CPU
        self.requests = Counter(
            "hfchain_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "hfchain_request_duration_seconds",
            "Time to the end of the response, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "hfchain_time_to_first_token_seconds",
            "From submission to the first generated token",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "hfchain_tokens", "Tokens in (prompts) and out (generated)", ["direction"], registry=r
        )
        self.batch = Histogram(
            "hfchain_batch_size",
            "Requests per generate() batch",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.cancellations = Counter(
            "hfchain_cancellations", "Generations stopped because the client left", registry=r
        )
        self.disconnects = Counter(
            "hfchain_client_disconnects", "Requests whose client left before the end", registry=r
        )
        self.rejected = Counter(
            "hfchain_rejected", "Requests refused with 429, by reason", ["reason"], registry=r
        )
        self.guard_tokens = Counter(
            "hfchain_guard_tokens",
            "Tokens of constrained replies a guard chose instead of the model (to close in time, or to end "
            "a repetition)",
            registry=r,
        )
        self.key_requests = Counter(
            "hfchain_key_requests", "Counted (POST) requests by API key name", ["key"], registry=r
        )
        self.key_tokens = Counter(
            "hfchain_key_tokens",
            "Tokens by API key name and kind (prompt, completion)",
            ["key", "kind"],
            registry=r,
        )
        self.repetitions = Counter(
            "hfchain_repetitions_ended", "Constrained strings or containers ended for repeating", registry=r
        )
        self.queue = Gauge("hfchain_queue_depth", "Generation requests waiting for the model", registry=r)
        self.running = Gauge("hfchain_batch_running", "Generation requests in the running batch", registry=r)
        self.in_flight = Gauge(
            "hfchain_requests_in_flight", "Admitted requests (running plus waiting)", registry=r
        )
        self.prefix_hits = Counter(
            "hfchain_prefix_cache_hits", "Prompts that started with a cached prefix", registry=r
        )
        self.draft_tokens = Counter(
            "hfchain_speculation_draft_tokens",
            "Speculative decoding: draft tokens checked by the model, by outcome",
            ["outcome"],
            registry=r,
        )
        self.prefill_tokens = Counter(
            "hfchain_prefill_tokens",
            "Prompt tokens by where their keys and values came from (reused: the prefix cache)",
            ["source"],
            registry=r,
        )
        self.prefix_tokens = Gauge(
            "hfchain_prefix_cache_tokens", "Tokens held by the prefix cache", registry=r
        )

    def watch(self, engine: Any, admission: Any) -> None:
        """Read queue depth, batch occupancy, admitted requests and the prefix cache when scraped."""
        if engine is not None:
            self.queue.set_function(lambda: engine.queued)
            self.running.set_function(lambda: engine.running)
            self.prefix_tokens.set_function(lambda: engine.pool.tokens if engine.pool else 0)
            self.registry.register(_PoolCounts(engine))
        self.in_flight.set_function(lambda: admission.active)

    def watch_embeddings(self, service: Any) -> None:
        """hfchain_embedding_requests_total and hfchain_embedding_batches_total, read when scraped (fewer
        batches than requests: concurrent requests were encoded together)."""
        self.registry.register(_EmbeddingCounts(service))


class _ReplicaInfo:
    """hfchain_replica_info: this replica's id (HFCHAIN_REPLICA_ID), model and runtime (torch, onnx-fp32,
    ...; read when scraped: HFCHAIN_RUNTIME=auto decides it when the model loads)."""

    def __init__(self, replica: str, model: str, runtime: Callable[[], str]) -> None:
        self.replica, self.model, self.runtime = replica, model, runtime

    def collect(self) -> Any:
        from prometheus_client.core import InfoMetricFamily

        about = "This replica: its id (HFCHAIN_REPLICA_ID), model and runtime (torch, onnx-fp32, ...)"
        info = InfoMetricFamily("hfchain_replica", about)
        info.add_metric([], {"replica": self.replica, "model": self.model, "runtime": self.runtime()})
        yield info


class _PoolCounts:
    """The KV block pool, read when scraped: its bytes, blocks by state, evictions."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        pool = self.engine.pool
        size = GaugeMetricFamily("hfchain_kv_pool_bytes", "Bytes reserved for the KV block pool")
        blocks = GaugeMetricFamily(
            "hfchain_kv_blocks",
            "KV pool blocks (16 tokens each) by state: used by running rows, cached for reuse, free",
            labels=["state"],
        )
        evictions = CounterMetricFamily(
            "hfchain_kv_evictions", "Cached blocks reused for other tokens (least recently used first)"
        )
        waits = CounterMetricFamily(
            "hfchain_kv_waits", "Times a request waited in the queue because the pool had no blocks for it"
        )
        if pool is not None:
            size.add_metric([], pool.bytes)
            cached, free = len(pool.cached), len(pool.free)
            for state, count in (("used", pool.total - cached - free), ("cached", cached), ("free", free)):
                blocks.add_metric([state], count)
            evictions.add_metric([], pool.stats.evictions)
            waits.add_metric([], pool.stats.waits)
        yield from (size, blocks, evictions, waits)


class _EmbeddingCounts:
    """A collector over the embedding service's own counters."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        yield CounterMetricFamily(
            "hfchain_embedding_requests", "Embedding requests encoded", self.service.requests
        )
        yield CounterMetricFamily(
            "hfchain_embedding_batches", "Encoder batches run for them", self.service.batches
        )


class MetricsObserver(Observer):
    """The engine's hooks, recorded as metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def batch(self, size: int) -> None:
        self.metrics.batch.observe(size)

    def first_token(self, seconds: float) -> None:
        self.metrics.ttft.observe(seconds)

    def finished(self, completion: Completion) -> None:
        self.metrics.tokens.labels("in").inc(completion.prompt_tokens)
        self.metrics.tokens.labels("out").inc(completion.completion_tokens)
        if completion.finish_reason == "cancelled":
            self.metrics.cancellations.inc()
        self.metrics.guard_tokens.inc(completion.guard_tokens)
        self.metrics.repetitions.inc(completion.repetitions_ended)

    def rejected(self) -> None:
        self.metrics.rejected.labels("tokens_in_flight").inc()

    def prefill(self, reused: int, computed: int) -> None:
        if reused:
            self.metrics.prefix_hits.inc()
        self.metrics.prefill_tokens.labels("reused").inc(reused)
        self.metrics.prefill_tokens.labels("computed").inc(computed)

    def drafts(self, drafted: int, accepted: int) -> None:
        self.metrics.draft_tokens.labels("accepted").inc(accepted)
        self.metrics.draft_tokens.labels("rejected").inc(drafted - accepted)


class Telemetry:
    """Outermost middleware: counts and times every request, and logs one line for it."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status, rid = time.perf_counter(), 500, "-"

        async def observing_send(message: dict) -> None:
            nonlocal status, rid
            if message["type"] == "http.response.start":
                status = message["status"]
                rid = dict(message.get("headers") or []).get(b"x-request-id", b"-").decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "other"  # any token is a method
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            log.info(
                "%s %s %s %.0f ms",
                scope["method"],
                scope["path"],
                status,
                seconds * 1000,
                extra={
                    "request_id": rid,
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                },
            )
