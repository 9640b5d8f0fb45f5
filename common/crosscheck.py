"""Our timings beside the tools users already trust, on the same files.

- :func:`benchmark_app`: OpenVINO's ``benchmark_app`` in latency mode (sync API, one stream,
  the same thread count and f32 precision as :mod:`common.backends`), its median parsed.
- :func:`predict_speed`: ultralytics' predictor, image by image at batch 1: its own
  preprocess / inference / postprocess (NMS) milliseconds, end to end, for any format it runs.
- :func:`save`: the tools' figures as a CSV under ``results/crosscheck/``, so a reader sees them.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterable

import numpy as np

from common import env

BENCHMARK_APP_FIELDS = ("median_ms", "average_ms", "min_ms", "max_ms", "count")
_PATTERNS = {"median_ms": r"Median:\s+([\d.]+) (us|ms|s)\b", "average_ms": r"Average:\s+([\d.]+) (us|ms|s)\b",
             "min_ms": r"Min:\s+([\d.]+) (us|ms|s)\b", "max_ms": r"Max:\s+([\d.]+) (us|ms|s)\b",
             "count": r"Count:\s+(\d+) (iterations)"}
#: benchmark_app prints a fast model's latency in microseconds
_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "iterations": 1.0}


def parse_benchmark_app(log: str) -> dict[str, float]:
    """The latency statistics of a ``benchmark_app`` report; raises naming what is missing."""
    out = {}
    for key, pattern in _PATTERNS.items():
        m = re.search(pattern, log)
        if m is None:
            raise ValueError(f"benchmark_app output has no {key} line ({pattern!r}); last lines:\n"
                             + "\n".join(log.strip().splitlines()[-5:]))
        out[key] = float(m.group(1)) * _TO_MS[m.group(2)]
    return out


def benchmark_app(xml: str | Path, input_shape: tuple[int, ...], *, threads: int = env.DEFAULT_THREADS,
                  seconds: int = 5, log_dir: Path | None = None) -> dict[str, float]:
    """Run OpenVINO's ``benchmark_app`` on an IR (``.xml`` or its folder): sync API, one stream,
    ``threads`` threads, f32 inference precision, ``seconds`` long (1 s under ``make test``'s quick
    timing). The full log is kept in ``log_dir`` when given."""
    from common.measure import quick_timing

    if quick_timing():          # under make test: a short run, its figures are never compared
        seconds = min(seconds, 1)
    p = Path(xml)
    xml = sorted(p.glob("*.xml"))[0] if p.is_dir() else p
    exe = Path(sys.executable).with_name("benchmark_app")
    if not exe.exists():
        raise FileNotFoundError(f"benchmark_app is not installed beside {sys.executable} (it ships with "
                                "the openvino package)")
    cmd = [str(exe), "-m", str(xml), "-d", "CPU", "-api", "sync", "-hint", "none", "-nstreams", "1",
           "-nthreads", str(threads), "-infer_precision", "f32", "-t", str(seconds),
           "-shape", "[" + ",".join(map(str, input_shape)) + "]"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    log = proc.stdout + proc.stderr
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"benchmark_app_{xml.stem}.log").write_text(log.replace(str(env.REPO_ROOT), "."))
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark_app failed ({proc.returncode}): " + "\n".join(log.strip().splitlines()[-5:]))
    return parse_benchmark_app(log)


def predict_speed(artifact: str | Path, images: Iterable[Path], img_size: int, *, warmup: int = 3,
                  threads: int = env.DEFAULT_THREADS) -> dict[str, float]:
    """Median preprocess / inference / postprocess ms per image of ultralytics' predictor on
    ``artifact`` (any format ultralytics runs), one image per call after ``warmup`` calls."""
    from common import workloads

    p = Path(artifact)
    y = workloads.yolo(p.parent if p.suffix == ".xml" else p)
    speeds = []
    images = list(images)
    if len(images) <= warmup:
        raise ValueError(f"need more than {warmup} images, got {len(images)}")
    for i, img in enumerate(images):
        r = y.predict(str(img), imgsz=img_size, device="cpu", verbose=False)[0]
        env.set_threads(threads)          # ultralytics resets torch's threads in select_device()
        if i >= warmup:
            speeds.append(r.speed)
    return {f"{k}_ms": float(np.median([s[k] for s in speeds])) for k in ("preprocess", "inference", "postprocess")}


def fitness(quality: dict) -> float:
    """ultralytics' own ``fitness`` of a detector's metrics (its weights of P, R, mAP50 and
    mAP50-95; in ultralytics 8.4 mAP50-95 alone), computed by ultralytics' ``Metric``."""
    from ultralytics.utils.metrics import Metric

    m = Metric()
    values = [quality["precision"], quality["recall"], quality["map50"], quality["map50_95"]]
    m.mean_results = lambda: values
    return float(m.fitness())


def save(rows: list[dict], name: str, out_dir: Path | None = None) -> Path:
    """Write ``rows`` to ``results/crosscheck/<name>.csv`` (atomic)."""
    out_dir = Path(out_dir or env.results_dir() / "crosscheck")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.csv"
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return path
