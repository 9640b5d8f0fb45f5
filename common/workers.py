"""Independent jobs side by side in worker processes, each on its own few threads.

Small models use two threads badly: a YOLOv8 student spends much of each step in Python, data
loading and small kernels, so one 2-thread process leaves the second core idle part of the time.
Measured on the course's 2-core machine (hw6's seven detector students, 30 epochs each): 826 s as
two 1-thread processes side by side, 944 s one after another on two threads (two runs an hour
apart, so roughly 1.15x, not a paired measurement). Large-batch evaluation already uses both
cores (6.0 s on two threads, 12 s on one, for 1,000 ResNet-18 images), so only training uses this.

:func:`run` starts the processes with ``spawn`` (a clean interpreter: no notebook state, no
forked thread pools), sets every worker's threads (:func:`common.env.set_threads`) and silences
its stdout and stderr, which would otherwise reach the terminal instead of the notebook. A job
calls :func:`tick` to move the caller's one progress bar. A job's exception is raised in the
caller with the job's key. Float sums depend on the thread count, so results are reproducible
for a fixed ``threads``, and differ in the last bits from a 2-thread run of the same job.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

_QUEUE = None   # in a worker: where tick() reports to


def _init(threads: int, queue) -> None:
    import os
    import sys

    global _QUEUE
    _QUEUE = queue
    sys.stdout = sys.stderr = open(os.devnull, "w")   # bars and logs of the job: the caller shows one bar
    from common import env

    env.ultralytics_env()
    try:   # imported first, so that set_threads also pins the thread count ultralytics resets to
        import ultralytics.utils.torch_utils  # noqa: F401
    except ImportError:
        pass
    env.set_threads(threads)


def tick(n: int = 1) -> None:
    """Report ``n`` steps done to the caller's progress bar (nothing outside a worker)."""
    if _QUEUE is not None:
        _QUEUE.put(n)


def check_workers(workers: int) -> int:
    """``workers`` if it is an int >= 1, else one clear error."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1 (1: every job in this process, one after another), got {workers!r}")
    return workers


def run(fn: Callable[..., Any], jobs: dict[Hashable, dict], *, workers: int = 2, threads: int = 1,
        bar=None) -> dict[Hashable, Any]:
    """``{key: fn(**kwargs)}`` for every ``key: kwargs`` of ``jobs``, run by ``workers`` spawned
    processes with ``threads`` intra-op threads each, started in the order given (put the
    longest first). ``fn`` and every argument must pickle: a module-level function, plain data,
    models. ``bar`` (a tqdm bar) advances by every :func:`tick` of the jobs.
    ``workers=1`` runs the jobs here, one after another, on this process's threads."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    check_workers(workers)
    if workers == 1 or not jobs:   # here, one after another (no jobs: nothing to start)
        return {key: fn(**kwargs) for key, kwargs in jobs.items()}
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()

    def drain() -> None:
        while not queue.empty():
            n = queue.get()
            if bar is not None:
                bar.update(n)

    results: dict[Hashable, Any] = {}
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=_init,
                             initargs=(threads, queue)) as pool:
        pending = {pool.submit(fn, **kwargs): key for key, kwargs in jobs.items()}
        try:
            while pending:
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                drain()
                for fut in done:
                    key = pending.pop(fut)
                    try:
                        results[key] = fut.result()
                    except Exception as e:
                        raise RuntimeError(f"job {key!r} failed in its worker process: {e}") from e
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    drain()
    return {key: results[key] for key in jobs}
