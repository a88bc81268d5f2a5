"""Micro-batching of concurrent `/v1/predict` requests: one forward pass for the requests that wait.

Each request still takes its own place in the bounded pool (`app.Pool`: the concurrency bound,
the queue bound, 429 and the timeout are per request, as before). When a worker starts one, it
also claims every request for the same model that is still waiting, up to `max_samples`
samples, and predicts them in one `service.predict_features` call; the claimed requests' own
turns then only collect their share. Under load the per-call cost (the executor hand-off, the
model's Python overhead, one small forward per request) is paid once per batch. A batch that
fails on bad input is re-run request by request, so each error reaches its own request, worded
as if it had been sent alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from msakit import service

Predict = Callable[..., service.PredictionResult]


@dataclass(eq=False)
class Request:
    loaded: service.LoadedModel
    samples: Sequence[Mapping[str, Any]]
    ids: list[str] | None
    done: threading.Event = field(default_factory=threading.Event)
    claimed: bool = False
    result: service.PredictionResult | None = None
    error: BaseException | None = None


class Batcher:
    def __init__(self, *, max_samples: int, max_steps: int) -> None:
        self.max_samples, self.max_steps = max_samples, max_steps
        self.lock = threading.Lock()
        self.waiting: list[Request] = []

    def add(self, loaded: service.LoadedModel, samples: Sequence[Mapping[str, Any]], ids: list[str] | None) -> Request:
        """Registers a request (on the event loop, before it is queued in the pool)."""
        request = Request(loaded, samples, ids)
        with self.lock:
            self.waiting.append(request)
        return request

    def discard(self, request: Request) -> None:
        """A request the pool refused (429): it never runs."""
        with self.lock:
            if request in self.waiting:
                self.waiting.remove(request)

    def run(self, request: Request) -> service.PredictionResult:
        """The request's turn in a worker: its result, computed now (with whatever waits beside it)
        or by the worker that claimed it."""
        with self.lock:
            batch = [] if request.claimed else self._claim(request)
        if batch:
            self._predict(batch)
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _claim(self, first: Request) -> list[Request]:
        batch, total = [first], len(first.samples)
        first.claimed = True
        self.waiting.remove(first)
        if self._alone(first):
            return batch
        for other in list(self.waiting):
            fits = total + len(other.samples) <= self.max_samples
            if other.loaded is first.loaded and not self._alone(other) and fits:
                other.claimed = True
                self.waiting.remove(other)
                batch.append(other)
                total += len(other.samples)
        return batch

    def _alone(self, r: Request) -> bool:
        """Requests that may be refused run alone, so the error names their own fields."""
        return len(r.samples) > self.max_samples or (r.ids is not None and len(r.ids) != len(r.samples))

    def _predict(self, batch: list[Request]) -> None:
        try:
            if len(batch) > 1:
                try:
                    self._joint(batch)
                    return
                except Exception:  # some request in it is bad: each on its own, with its own error
                    pass
            for r in batch:
                try:
                    r.result = service.predict_features(
                        r.loaded, r.samples, ids=r.ids, max_samples=self.max_samples, max_steps=self.max_steps
                    )
                except BaseException as exc:
                    r.error = exc
        finally:
            for r in batch:
                r.done.set()

    def _joint(self, batch: list[Request]) -> None:
        samples = [s for r in batch for s in r.samples]
        ids = [i for r in batch for i in (r.ids if r.ids is not None else [str(k) for k in range(len(r.samples))])]
        joint = service.predict_features(
            batch[0].loaded, samples, ids=ids, max_samples=len(samples), max_steps=self.max_steps
        )
        start = 0
        for r in batch:
            n = len(r.samples)
            r.result = service.PredictionResult(joint.model, joint.task, joint.samples[start : start + n])
            start += n
