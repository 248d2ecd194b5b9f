"""``GET /metrics``: Prometheus text (open, like ``/healthz``: aggregate counts only).

From the store, at most once per :data:`CACHE_S` (a scrape is a few aggregate queries):
runs by kind and status, queue depth by state, run durations by kind (a histogram of
finished runs), finished runs by the accelerator their VMs booted with. From this
process: webhook deliveries by answer status, and the intake latency.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from vmrunner.services.api_queries import DURATION_BUCKETS, Figures, metric_figures

CACHE_S = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StoreCollector(Collector):
    """The store's figures as metric families, cached briefly."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self._cached: tuple[float, Figures] | None = None

    def figures(self) -> Figures:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > CACHE_S:
            self._cached = (now, metric_figures(self.services))
        return self._cached[1]

    def collect(self) -> Iterator[Metric]:
        figures = self.figures()
        runs = GaugeMetricFamily("vmrunner_runs", "Kept runs by kind and status.",
                                 labels=["kind", "status"])  # fmt: skip
        for (kind, status), n in sorted(figures.runs.items()):
            runs.add_metric([kind, status], n)
        depth = GaugeMetricFamily("vmrunner_queue_depth", "Shared queue items by state.",
                                  labels=["state"])  # fmt: skip
        for state, n in sorted(figures.queue.items()):
            depth.add_metric([state], n)
        accels = GaugeMetricFamily(
            "vmrunner_vm_runs_by_accel", "Finished runs by the accelerator their VMs booted with.",
            labels=["accel"],
        )  # fmt: skip
        for accel, n in sorted(figures.accels.items()):
            accels.add_metric([accel], n)
        yield from (runs, depth, accels, _durations(figures))


def _durations(figures: Figures) -> HistogramMetricFamily:
    family = HistogramMetricFamily("vmrunner_run_duration_seconds",
                                   "Durations of finished runs, by kind.", labels=["kind"])  # fmt: skip
    for kind, (counts, total, n) in sorted(figures.durations.items()):
        buckets = [(_le(b), c) for b, c in zip(DURATION_BUCKETS, counts, strict=True)]
        family.add_metric([kind], [*buckets, ("+Inf", n)], total)
    return family


def _le(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) else f"{int(bound)}.0"


class Metrics:
    """This app's registry: the store's figures and the webhook intake's counters."""

    def __init__(self, services: Any) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StoreCollector(services))
        self.webhooks = Counter("vmrunner_webhook_deliveries", "POST /webhook answers by status.",
                                ["status"], registry=self.registry)  # fmt: skip
        self.webhook_seconds = Histogram(
            "vmrunner_webhook_seconds", "POST /webhook latency (body read to answer).",
            registry=self.registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )  # fmt: skip

    def webhook(self, status: int, seconds: float) -> None:
        """Count one webhook answer."""
        self.webhooks.labels(str(status)).inc()
        self.webhook_seconds.observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
