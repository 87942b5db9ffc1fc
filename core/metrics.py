"""Prometheus metrics of this process (the standard process-wide registry, served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter("huiliu_http_requests_total", "HTTP requests handled", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "huiliu_http_request_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
DEPENDENCY_UP = Gauge(
    "huiliu_dependency_up", "1 when the dependency answered the last health check", ["name"]
)
TIMELINE_EVENTS = Counter("huiliu_timeline_events_total", "Timeline events appended", ["channel", "kind"])
AUDIT_FAILURES = Counter("huiliu_audit_write_failures_total", "Audit entries that could not be written")
