"""Why the course times on one thread: the same saved model timed at 1 and at 2 threads, each in
its own :class:`common.speed.Worker`, while the machine is quiet and while other processes keep a
CPU busy. Run ``python -m common.contention MODEL H,W`` (``docs/measuring-speed.md`` quotes a run).

On a 2-vCPU machine a 2-thread pool needs both CPUs at every parallel step, so any other runnable
process (a notebook's kernel, a test run, a browser) stalls it; a 1-thread timing leaves the
other CPU to them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

#: (label, how many busy processes, their niceness) in the order they run; quiet again at the end
CONDITIONS: tuple[tuple[str, int, int], ...] = (
    ("quiet", 0, 0), ("one busy process", 1, 0), ("two busy processes", 2, 0),
    ("one busy process, nice 19", 1, 19), ("quiet again", 0, 0))
BUSY = "while True: pass"


def run(model: str | Path, input_shape: tuple[int, ...], *, threads: Sequence[int] = (1, 2),
        rounds: int = 9, calls: int = 40, conditions: Sequence[tuple[str, int, int]] = CONDITIONS
        ) -> "pandas.DataFrame":
    """Per condition and thread count: the median and range over ``rounds`` of the per-round median
    of ``calls`` calls; the thread counts alternate within every round. Returns a tidy frame."""
    import numpy as np
    import pandas as pd

    from common import speed

    if not Path(model).exists():
        raise FileNotFoundError(f"{model} does not exist")
    if rounds < 1 or calls < 1 or not threads or min(threads) < 1:
        raise ValueError(f"need rounds >= 1, calls >= 1, threads >= 1; got {rounds}, {calls}, {list(threads)}")
    workers = {t: speed.Worker("pytorch", t) for t in threads}
    rows = []
    try:
        for w in workers.values():
            w.call("load", "m", str(model), tuple(input_shape))
        for label, busy, nice in conditions:
            hogs = [subprocess.Popen(["nice", "-n", str(nice), sys.executable, "-c", BUSY]) for _ in range(busy)]
            try:
                if hogs:
                    time.sleep(0.5)
                got: dict[int, list[float]] = {t: [] for t in threads}
                for _ in range(rounds):
                    for t, w in workers.items():
                        got[t].append(float(np.median(w.call("time", "m", 3, calls))))
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
            rows += [{"condition": label, "threads": t, "median_ms": float(np.median(v)),
                      "min_ms": min(v), "max_ms": max(v)} for t, v in got.items()]
    finally:
        for w in workers.values():
            w.close()
    return pd.DataFrame(rows)


def _main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: python -m common.contention MODEL H,W   (a saved model and its input size)")
    h, w = (int(v) for v in argv[1].split(","))
    table = run(argv[0], (1, 3, h, w))
    print(table.round(2).to_string(index=False))


if __name__ == "__main__":
    _main(sys.argv[1:])
