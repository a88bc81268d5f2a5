"""Prometheus text exposition (format 0.0.4) of the service's counters, written small by hand
(prometheus_client is not a dependency): requests, a latency histogram, queue depth, in-flight."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _labels(**labels: str) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels.items()) + "}"


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.latency: dict[str, list[int]] = {}
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.latency_count: dict[str, int] = defaultdict(int)
        self.rejected = 0
        self.queue_depth = 0
        self.in_flight = 0
        self.job_counts: Callable[[], dict[str, int]] | None = None

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, path, str(status))] += 1
            counts = self.latency.setdefault(path, [0] * len(BUCKETS))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            self.latency_sum[path] += seconds
            self.latency_count[path] += 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP msakit_requests_total HTTP requests by method, route and status.",
                "# TYPE msakit_requests_total counter",
            ]
            for (method, path, status), n in sorted(self.requests.items()):
                lines.append(f"msakit_requests_total{_labels(method=method, path=path, status=status)} {n}")
            lines += [
                "# HELP msakit_request_duration_seconds Request latency by route.",
                "# TYPE msakit_request_duration_seconds histogram",
            ]
            for path, counts in sorted(self.latency.items()):
                for bound, n in zip(BUCKETS, counts, strict=True):
                    lines.append(f"msakit_request_duration_seconds_bucket{_labels(path=path, le=str(bound))} {n}")
                total = self.latency_count[path]
                lines.append(f"msakit_request_duration_seconds_bucket{_labels(path=path, le='+Inf')} {total}")
                lines.append(f"msakit_request_duration_seconds_sum{_labels(path=path)} {self.latency_sum[path]}")
                lines.append(f"msakit_request_duration_seconds_count{_labels(path=path)} {total}")
            lines += [
                "# HELP msakit_queue_depth Predictions waiting for a worker.",
                "# TYPE msakit_queue_depth gauge",
                f"msakit_queue_depth {self.queue_depth}",
                "# HELP msakit_in_flight Predictions running now.",
                "# TYPE msakit_in_flight gauge",
                f"msakit_in_flight {self.in_flight}",
                "# HELP msakit_rejected_total Requests answered 429 because the queue was full.",
                "# TYPE msakit_rejected_total counter",
                f"msakit_rejected_total {self.rejected}",
            ]
            if self.job_counts is not None:
                lines += ["# HELP msakit_jobs Analysis jobs by status.", "# TYPE msakit_jobs gauge"]
                lines += [f"msakit_jobs{_labels(status=k)} {n}" for k, n in self.job_counts().items()]
        return "\n".join(lines) + "\n"
