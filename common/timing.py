"""One latency harness for every backend: warm-up, many repeats, robust statistics.

Each call of ``fn`` is timed on its own with ``time.perf_counter_ns``; the garbage collector
is paused while timing; on CUDA ``sync`` (``torch.cuda.synchronize``) runs before the clock
is read, so the GPU's queued work is counted. Thread counts are fixed by the caller (the
backends in :mod:`common.backends` take one) and recorded with the result.
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Summary of repeated single-call timings, in milliseconds."""

    median_ms: float
    p90_ms: float
    iqr_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    repeats: int
    warmup: int
    batch: int = 1
    threads: int | None = None
    backend: str = ""

    @property
    def throughput(self) -> float:
        """Items per second at the median latency."""
        return self.batch * 1000.0 / self.median_ms

    def as_dict(self) -> dict:
        return {**asdict(self), "throughput": self.throughput}

    def __str__(self) -> str:
        return (f"{self.backend or 'latency'}: median {self.median_ms:.3f} ms, "
                f"p90 {self.p90_ms:.3f} ms, IQR {self.iqr_ms:.3f} ms "
                f"({self.repeats} repeats after {self.warmup} warm-up, batch {self.batch}, "
                f"{self.threads} threads)")


def summarize(samples_ms, *, warmup: int = 0, batch: int = 1, threads: int | None = None,
              backend: str = "") -> LatencyStats:
    """Statistics of a list of per-call timings (ms)."""
    a = np.asarray(samples_ms, dtype=float)
    if a.size == 0:
        raise ValueError("no timing samples")
    q10, q25, q50, q75, q90 = np.percentile(a, [10, 25, 50, 75, 90])
    return LatencyStats(
        median_ms=float(q50), p90_ms=float(q90), iqr_ms=float(q75 - q25),
        mean_ms=float(a.mean()), std_ms=float(a.std(ddof=1)) if a.size > 1 else 0.0,
        min_ms=float(a.min()), repeats=int(a.size), warmup=warmup, batch=batch,
        threads=threads, backend=backend)


def measure(fn: Callable[[], object], *, warmup: int = 10, repeats: int = 100,
            max_seconds: float | None = None, sync: Callable[[], object] | None = None,
            batch: int = 1, threads: int | None = None, backend: str = "") -> LatencyStats:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed calls.

    ``max_seconds`` caps the timed phase (at least 5 calls are always timed), so slow
    models still finish; the number of calls actually timed is recorded in ``repeats``.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    samples: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start_all = time.perf_counter()
        for i in range(repeats):
            t0 = time.perf_counter_ns()
            fn()
            if sync:
                sync()
            samples.append((time.perf_counter_ns() - t0) / 1e6)
            if max_seconds is not None and i >= 4 and time.perf_counter() - start_all > max_seconds:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return summarize(samples, warmup=warmup, batch=batch, threads=threads, backend=backend)
