"""Measure a model the same way in every homework: size, latency (CPU, and GPU when there is
one), peak memory in a fresh process; returns the registry columns plus the full statistics."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common import backends, env, memory, size, timing

#: Set (to anything but "" or "0") by the test session (root ``conftest.py``): every latency is
#: then timed with at most QUICK_WARMUP warm-up and QUICK_REPEATS timed calls, peak RAM is not
#: measured (its fresh process costs about 5 s per PyTorch model), and the row's notes say both.
#: No test compares a timing or a RAM figure (``common.compare`` skips those columns), so
#: ``make test`` need not spend minutes producing figures it discards; ``make homeworks`` always
#: measures in full. ``tests/test_backends.py`` covers the RAM measurement itself.
QUICK_TIMING_ENV = "NNC_QUICK_TIMING"
QUICK_WARMUP, QUICK_REPEATS = 1, 3


def quick_timing() -> bool:
    """Whether latencies are timed briefly and RAM is skipped (under the test session,
    :data:`QUICK_TIMING_ENV`)."""
    return os.environ.get(QUICK_TIMING_ENV, "") not in ("", "0")


@dataclass
class Measurement:
    """Registry-ready figures (``row()``) and the statistics behind them."""

    path: Path
    size_mb: float
    gzip_mb: float
    cpu: timing.LatencyStats | None
    ram: memory.MemoryStats | None
    gpu: timing.LatencyStats | None = None
    vram_mb: float | None = None
    notes: list[str] = field(default_factory=list)
    threads: int = env.DEFAULT_THREADS

    def row(self) -> dict:
        cpu = {"latency_cpu_ms": self.cpu.median_ms, "latency_cpu_p90_ms": self.cpu.p90_ms} if self.cpu else {}
        return {"size_mb": self.size_mb, "gzip_mb": self.gzip_mb, **cpu,
                "latency_gpu_ms": self.gpu.median_ms if self.gpu else None,
                "ram_mb": self.ram.peak_rss_mb if self.ram and self.ram.runs else None, "vram_mb": self.vram_mb,
                "threads": self.threads, "notes": "; ".join(self.notes)}


#: how a row timed in a paired run (``cpu=False`` below) notes it; a row left out of that run drops it
PAIRED_NOTE = "cpu: paired comparison"


def measure(artifact: str | Path, input_shape: tuple[int, ...], *, threads: int = env.DEFAULT_THREADS,
            warmup: int = 10, repeats: int = 100, max_seconds: float = 20.0, ram: bool = True,
            gpu: bool = True, label: str = "", cpu: bool = True) -> Measurement:
    """Measure a saved model (any format :mod:`common.backends` loads) at ``input_shape``.

    CPU latency: ``repeats`` timed calls after ``warmup`` (capped at ``max_seconds``; fewer
    under :func:`quick_timing`), on a fixed zero-free random input, ``threads`` threads. RAM:
    peak RSS of a fresh process that loads the model and runs 10 inferences (under
    :func:`quick_timing` not measured: NaN figures, no registry value, a note). GPU latency and
    VRAM only when CUDA is present and the format runs there; otherwise a note says why they
    are empty. ``cpu=False``: no CPU latency here, because the notebook times the model in a
    paired comparison (:func:`common.speed.compare`), which fills the latency columns.
    """
    import torch

    path = Path(artifact)
    threads_before = torch.get_num_threads()
    quick = quick_timing()
    if quick:
        warmup, repeats = min(warmup, QUICK_WARMUP), min(repeats, QUICK_REPEATS)
    x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
    backend = backends.load(path, threads=threads)
    prepared = backend.prepare(x)
    out_batch = backend.to_numpy(backend.run(prepared)).shape[0]
    if out_batch != input_shape[0]:  # e.g. a TFLite graph with batch 1 baked into its reshapes
        raise ValueError(f"{path.name} returned a batch of {out_batch} for an input batch of "
                         f"{input_shape[0]}: it has a fixed batch; export it at batch {input_shape[0]}")
    if cpu:
        env.set_threads(threads)   # timed on ``threads``; the caller's count comes back below
        cpu_stats = timing.measure(lambda: backend.run(prepared), warmup=warmup, repeats=repeats,
                                   max_seconds=max_seconds, batch=input_shape[0], threads=threads,
                                   backend=label or backend.name)
        notes = [f"cpu: median of {cpu_stats.repeats} runs after {warmup} warm-up, batch {input_shape[0]}"
                 + (f" (quick timing: {QUICK_TIMING_ENV} is set)" if quick else "")]
    else:
        cpu_stats, notes = None, [f"{PAIRED_NOTE} (common.speed), batch {input_shape[0]}"]
    env.set_threads(threads_before)  # the caller's count (a runtime may change it on load, the timing above did)
    if ram and quick:
        ram_stats = memory.MemoryStats(float("nan"), float("nan"), None, runs=0)
        notes.append(f"ram: not measured ({QUICK_TIMING_ENV} is set)")
    else:
        ram_stats = memory.peak_memory(path, input_shape, threads=threads) if ram else None
    gpu_stats, vram = None, None
    if gpu:
        usable, why = env.gpu_measurements()
        if not usable:
            notes.append(f"gpu: skipped ({why})")
        elif backend.name not in ("pytorch", "torchscript", "onnxruntime"):
            notes.append(f"gpu: skipped ({backend.name} runs on the CPU here)")
        else:
            try:
                gb = backends.load(path, threads=threads, device="cuda")
            except backends.DeviceUnavailable as e:   # never a CPU time in the GPU column
                notes.append(f"gpu: skipped ({e})")
            else:
                gp = gb.prepare(x)
                gpu_stats = timing.measure(lambda: gb.run(gp), warmup=warmup, repeats=repeats,
                                           max_seconds=max_seconds, sync=gb.sync,
                                           batch=input_shape[0], threads=threads,
                                           backend=f"{label or gb.name} (cuda)")
                vram = memory.peak_memory(path, input_shape, threads=threads, device="cuda").vram_mb
                notes.append("vram: device memory the runtime took beyond the CUDA context (cudaMemGetInfo)")
    return Measurement(path, size.size_mb(path), size.gzip_mb(path), cpu_stats, ram_stats,
                       gpu_stats, vram, notes, threads)


def model_figures(model, input_shape: tuple[int, ...]) -> dict:
    """Params, GFLOPs and weight sparsity of a torch module (registry columns)."""
    return {"params": size.count_params(model), "gflops": size.gflops(model, input_shape),
            "sparsity": size.sparsity(model)}
