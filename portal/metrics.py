"""Prometheus metrics: request counts and latency, plus gauges read from the database at scrape time."""

from __future__ import annotations

import os
from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# auto_describe off: describing the database collector would query the database at import time.
REGISTRY = CollectorRegistry(auto_describe=False)

REQUESTS = Counter(
    "customs_http_requests",
    "HTTP requests handled, by URL name, method and status class.",
    ["view", "method", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "customs_http_request_duration_seconds",
    "Time to produce a response, by URL name.",
    ["view"],
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
# Granted registry tokens are counted, not audited: CI fleets ask for thousands an hour.
REGISTRY_TOKENS = Counter(
    "customs_registry_tokens",
    "Registry bearer tokens issued, by service and outcome (granted, partial, anonymous).",
    ["service", "outcome"],
    registry=REGISTRY,
)


def observe_request(request: HttpRequest, response: HttpResponse, seconds: float) -> None:
    # Label by URL name, never by path: paths carry ids and would grow the series without bound.
    match = getattr(request, "resolver_match", None)
    view = match.view_name if match else "unmatched"
    REQUESTS.labels(view=view, method=request.method or "", status=f"{response.status_code // 100}xx").inc()
    LATENCY.labels(view=view).observe(seconds)


class DatabaseCollector(Collector):
    """Open findings by severity and audit trail length, read fresh on every scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db.models import Count

        from portal.models import AuditEvent, Finding

        findings = GaugeMetricFamily(
            "customs_findings_open", "Open, unsuppressed findings.", labels=["severity"]
        )
        counts = dict(Finding.objects.open().values_list("severity").annotate(n=Count("id")).order_by())
        for severity in Finding.Severity.values:
            findings.add_metric([severity], counts.get(severity, 0))
        yield findings
        yield GaugeMetricFamily(
            "customs_audit_events", "Events in the audit trail.", value=AuditEvent.objects.count()
        )


REGISTRY.register(DatabaseCollector())


def exposition_registry() -> CollectorRegistry:
    """What a scrape reads: this process's metrics, or every gunicorn worker's in multiprocess mode."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    # Each worker writes its counters to files in that folder; a fresh registry per scrape reads them all.
    combined = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
    combined.register(DatabaseCollector())
    return combined
