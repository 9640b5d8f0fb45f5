"""Our timings beside the tools users already trust, on the same files.

- :func:`benchmark_app`: OpenVINO's ``benchmark_app`` in latency mode (sync API, one stream,
  the same thread count and f32 precision as :mod:`common.backends`), its median parsed.
- :func:`predict_speed`: ultralytics' predictor, image by image at batch 1: its own
  preprocess / inference / postprocess (NMS) milliseconds, end to end, for any format it runs.
- :func:`save`: the tools' figures as a CSV under ``results/crosscheck/``, so a reader sees them.
"""

from __future__ import annotations

import contextlib
import csv
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from common import env
from common import files

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


@contextlib.contextmanager
def pinned(threads: int, precision: str = "f32") -> Iterator[None]:
    """While inside, the runtimes ultralytics' AutoBackend opens run like our harness's: ONNX Runtime
    sessions and OpenVINO models at ``threads`` intra-op threads (OpenVINO also at ``precision``),
    TFLite interpreters at ``threads``, torch at ``threads``. Outside, ultralytics opens them at its
    own defaults (ONNX Runtime and OpenVINO: every core; TFLite: its ``NUM_THREADS``; OpenVINO at the
    CPU's default precision, bf16 on AVX512-BF16 CPUs). Restores everything on exit."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if precision not in ("f32", "bf16", "f16"):
        raise ValueError(f"unknown precision {precision!r}; choose one of ['bf16', 'f16', 'f32']")
    import torch

    undo = []

    def patch(owner, name, value) -> None:
        undo.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    try:
        import onnxruntime as ort

        session_init = ort.InferenceSession.__init__

        def init(self, path_or_bytes, sess_options=None, *args, **kwargs):
            options = sess_options or ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            session_init(self, path_or_bytes, options, *args, **kwargs)
        patch(ort.InferenceSession, "__init__", init)
    except ImportError:
        pass
    try:
        import openvino as ov

        compile_model = ov.Core.compile_model

        def compile_pinned(self, model, device_name=None, config=None, **kwargs):
            config = {**(config or {}), "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision}
            return compile_model(self, model, device_name, config, **kwargs)
        patch(ov.Core, "compile_model", compile_pinned)
    except ImportError:
        pass
    before = torch.get_num_threads()
    env.set_threads(threads)   # torch, and ultralytics' NUM_THREADS for its TFLite interpreters
    try:
        yield
    finally:
        for owner, name, value in reversed(undo):
            setattr(owner, name, value)
        env.set_threads(before)


def predict_speed(artifact: str | Path, images: Iterable[Path], img_size: int, *, warmup: int = 3,
                  threads: int = env.DEFAULT_THREADS) -> dict[str, float]:
    """Median preprocess / inference / postprocess ms per image of ultralytics' predictor on
    ``artifact`` (any format ultralytics runs), one image per call after ``warmup`` calls, with its
    runtime :func:`pinned` to ``threads`` threads and f32, like our harness."""
    from common import workloads

    p = Path(artifact)
    y = workloads.yolo(p.parent if p.suffix == ".xml" else p)
    speeds = []
    images = list(images)
    if len(images) <= warmup:
        raise ValueError(f"need more than {warmup} images, got {len(images)}")
    with pinned(threads):   # restores the caller's count: predicting here must not change its training
        for i, img in enumerate(images):
            env.set_threads(threads)      # ultralytics resets torch's threads in select_device()
            r = y.predict(str(img), imgsz=img_size, device="cpu", verbose=False)[0]
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
    path = out_dir / f"{name}.csv"
    with files.atomic(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


# --- why two tools disagree: each step measured, in a fresh process --------------------------

#: rounds of a gap study (interleaved, like :mod:`common.speed`); under quick timing 2
GAP_ROUNDS = 6


def _speeds(timers: dict, reference: str, rounds: int, threads: int, block: int = 10, warmup: int = 3) -> dict:
    """Interleave ``timers`` (:func:`common.speed.interleave`) and summarize them as plain dicts,
    adding each candidate's speed-up against the one before it in ``timers`` (same rounds)."""
    from dataclasses import asdict

    from common import speed

    samples = speed.interleave(timers, reference, rounds=rounds, block=block, warmup=warmup, pause=speed.PAUSE_S)
    s = speed.summarize(samples, reference, block=block, threads=threads)
    medians = speed.round_medians(samples, reference)
    out, names = {}, list(timers)
    for i, name in enumerate(names):
        d = asdict(s[name])
        if i:
            prev = names[i - 1]
            # this step's speed-up against the one before it: the previous median over this one, per round
            d["step"], d["step_lo"], d["step_hi"] = speed.bootstrap_median(
                [a / b for a, b in zip(medians[prev], medians[name])])
        out[name] = d
    return out


def _openvino_study(xml: str, shape: list[int], threads: int, rounds: int) -> dict:
    """Our OpenVINO call against benchmark_app's loop, on one IR, in this (fresh) process."""
    import openvino as ov

    from common import backends

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ours = backends.load(xml, threads=threads)
    xo = ours.prepare(x)
    req = ours.handle.create_infer_request()
    req.set_input_tensor(ov.Tensor(x.copy()))
    plain = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
                                                      "INFERENCE_PRECISION_HINT": "f32"})
    req2 = plain.create_infer_request()
    req2.set_input_tensor(ov.Tensor(x.copy()))
    from common.speed import time_calls

    timers = {"ours": lambda wu, n: time_calls(lambda: ours.run(xo), wu, n),
              "input preset": lambda wu, n: time_calls(req.infer, wu, n),
              "no latency hint": lambda wu, n: time_calls(req2.infer, wu, n)}
    return _speeds(timers, "ours", rounds, threads)


def _ultralytics_study(artifact: str, data: str, img_size: int, threads: int, rounds: int) -> dict:
    """Our bare runtime, ultralytics' AutoBackend wrapper with the runtime :func:`pinned` to our
    threads and f32, the same wrapper at ultralytics' own defaults (its thread count; OpenVINO at the
    CPU's default precision) and its validator's per-image inference time (the figure ``benchmark``
    reports, at those defaults) on one file, interleaved, in this (fresh) process."""
    import torch

    from common import backends, workloads
    from common.speed import time_calls

    p = Path(artifact)
    src = str(p.parent if p.suffix == ".xml" else p)
    env.set_threads(threads)
    from ultralytics.nn.autobackend import AutoBackend

    x = np.random.default_rng(0).random((1, 3, img_size, img_size), dtype=np.float32)
    bare = backends.load(p, threads=threads)
    xb = bare.prepare(x)
    with pinned(threads):
        wrapper = AutoBackend(src, device=torch.device("cpu"), verbose=False)
    defaults = AutoBackend(src, device=torch.device("cpu"), verbose=False)
    env.set_threads(threads)   # ultralytics resets torch's threads in select_device()
    xt = torch.from_numpy(x)
    y = workloads.yolo(src)

    def validator(wu, n):      # one pass over the validation split, as ultralytics' benchmark runs it
        r = y.val(data=data, batch=1, imgsz=img_size, device="cpu", rect=False, plots=False, verbose=False,
                  conf=0.001)
        env.set_threads(threads)   # ultralytics resets torch's threads in select_device()
        return [float(r.speed["inference"])]

    timers = {"bare": lambda wu, n: time_calls(lambda: bare.run(xb), wu, n),
              "wrapper": lambda wu, n: time_calls(lambda: wrapper(xt), wu, n),
              "defaults": lambda wu, n: time_calls(lambda: defaults(xt), wu, n),
              "validator": validator}
    return _speeds(timers, "bare", rounds, threads, block=20, warmup=10)


_STUDIES = {"openvino": _openvino_study, "ultralytics": _ultralytics_study}


def _isolated(study: str, timeout: int = 900, **kwargs) -> dict:
    """Run a study in a fresh process (``python -m common.crosscheck STUDY ARGS OUT``) that imports
    only what it needs; its libraries' prints go nowhere. Returns its result."""
    import json
    import tempfile

    from common.measure import quick_timing

    if study not in _STUDIES:
        raise ValueError(f"unknown study {study!r}; choose one of {sorted(_STUDIES)}")
    kwargs.setdefault("rounds", 2 if quick_timing() else GAP_ROUNDS)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "result.json"
        proc = subprocess.run([sys.executable, "-m", "common.crosscheck", study, json.dumps(kwargs), str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=env.REPO_ROOT,
                              timeout=timeout)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"the {study} study failed ({proc.returncode}): "
                               + "\n".join(proc.stderr.strip().splitlines()[-5:]))
        return json.loads(out.read_text())


COLUMN = "against the step above"


def _ratio_cell(d: dict) -> str:
    """A step measured in the same run as the one above: its time ratio, interval and verdict at
    that run's A/A noise (:func:`common.speed.time_words`)."""
    from common import speed

    return speed.time_words(d["step"], d["step_lo"], d["step_hi"], d["noise"])


def _moment_cell(this_ms: float, above_ms: float, why: str) -> str:
    """A step timed at another moment or in another process: a plain time ratio, no verdict."""
    return f"time x{this_ms / above_ms:.2f} ({why}: no interval, no verdict)"


def openvino_gap(xml: str | Path, input_shape: tuple[int, ...], harness_ms: float, *,
                 threads: int = env.DEFAULT_THREADS, log_dir: Path | None = None) -> "pandas.DataFrame":
    """Why our OpenVINO median and ``benchmark_app``'s differ, step by step on one IR: our harness
    (``harness_ms``, measured earlier), our call alone in a fresh process, the input tensor set once
    (benchmark_app's loop), compiled without the latency hint (benchmark_app's ``-hint none``; these
    three interleaved in one run, each step's ratio with its 95 % interval), then benchmark_app
    itself, run right after. Returns one row per step."""
    import pandas as pd

    p = Path(xml)
    xml = sorted(p.glob("*.xml"))[0] if p.is_dir() else p
    s = _isolated("openvino", xml=str(xml), shape=list(input_shape), threads=threads)
    tool = benchmark_app(xml, input_shape, threads=threads, log_dir=log_dir)
    rows = [{"step": "our harness (section 4, interleaved)", "median ms": harness_ms,
             COLUMN: ""},
            {"step": "our call, fresh process", "median ms": s["ours"]["median_ms"],
             COLUMN: _moment_cell(s["ours"]["median_ms"], harness_ms, "another moment")},
            {"step": "input set once (as benchmark_app)", "median ms": s["input preset"]["median_ms"],
             COLUMN: _ratio_cell(s["input preset"])},
            {"step": "no latency hint (as benchmark_app)",
             "median ms": s["no latency hint"]["median_ms"],
             COLUMN: _ratio_cell(s["no latency hint"])},
            {"step": f"benchmark_app ({tool['count']:.0f} calls, right after)",
             "median ms": tool["median_ms"],
             COLUMN: _moment_cell(tool["median_ms"], s["no latency hint"]["median_ms"], "another process")}]
    df = pd.DataFrame(rows)
    df["median ms"] = df["median ms"].round(2)
    return df


def ultralytics_gap(artifact: str | Path, data: str | Path, img_size: int, harness_ms: float, benchmark_ms: float,
                    *, threads: int = env.DEFAULT_THREADS) -> "pandas.DataFrame":
    """Why our median and ultralytics' ``benchmark`` differ, step by step on one file: our harness
    (``harness_ms``), the bare runtime in a fresh process with ultralytics loaded, ultralytics'
    AutoBackend wrapper (torch → numpy → runtime → torch) with the runtime :func:`pinned` to our
    threads and f32, the same wrapper at ultralytics' default threads and precision, its validator's
    per-image inference time over one pass of the validation split (those four interleaved in one run), then
    ``benchmark_ms``, what ``benchmark`` reported on its own export earlier."""
    import pandas as pd

    s = _isolated("ultralytics", artifact=str(artifact), data=str(data), img_size=img_size, threads=threads)
    rows = [{"step": "our harness (section 4, interleaved)", "median ms": harness_ms,
             COLUMN: ""},
            {"step": "bare runtime, fresh process", "median ms": s["bare"]["median_ms"],
             COLUMN: _moment_cell(s["bare"]["median_ms"], harness_ms, "another moment")},
            {"step": "AutoBackend wrapper, warm, our threads and f32", "median ms": s["wrapper"]["median_ms"],
             COLUMN: _ratio_cell(s["wrapper"])},
            {"step": "AutoBackend at ultralytics' default threads and precision",
             "median ms": s["defaults"]["median_ms"], COLUMN: _ratio_cell(s["defaults"])},
            {"step": f"validator: mean per image, one pass ({s['validator']['rounds']} passes)",
             "median ms": s["validator"]["median_ms"],
             COLUMN: _ratio_cell(s["validator"])},
            {"step": "ultralytics benchmark (its export, earlier)", "median ms": benchmark_ms,
             COLUMN: _moment_cell(benchmark_ms, s["validator"]["median_ms"], "another moment")}]
    df = pd.DataFrame(rows)
    df["median ms"] = df["median ms"].round(2)
    return df


def largest_step(steps: "pandas.DataFrame") -> str:
    """One sentence: the tool's figure against ours and the step that moves it most (the ratio of
    the two medians), with that step's verdict (the median of the per-round paired ratios, which
    can differ from the ratio of medians) when it was measured in the same run as the step above;
    a step that is no measurable difference, or has no verdict, does not explain the gap."""
    ms = steps["median ms"].tolist()
    factors = [b / a for a, b in zip(ms, ms[1:])]
    i = max(range(len(factors)), key=lambda k: abs(math.log(factors[k]))) + 1
    cell = str(steps[COLUMN].iloc[i]) if COLUMN in steps else ""
    how = ("timed at another moment or in another process: no verdict" if not cell or "no verdict" in cell
           else f"in the same run, the median of paired ratios: {cell}")
    unexplained = ("; no single step explains the gap measurably" if "no measurable difference" in cell or "no verdict" in how
                   else "")
    verdicts = [str(v) for v in steps[COLUMN]] if COLUMN in steps else [""] * len(ms)
    measured = [k for k in range(1, len(ms)) if k != i and re.search(r"\): (faster|slower)", verdicts[k])]
    if unexplained and measured:   # a smaller step that was measured beats a larger one that was not
        j = max(measured, key=lambda k: abs(math.log(factors[k - 1])))
        unexplained = f"; the largest step measured in its run: \"{steps['step'].iloc[j]}\" ({verdicts[j]})"
    return (f"theirs {ms[-1]:.2f} ms against ours {ms[0]:.2f} ms (time ×{ms[-1] / ms[0]:.2f}); the largest single step: "
            f"\"{steps['step'].iloc[i]}\" (ratio of medians ×{factors[i - 1]:.2f}; {how}){unexplained}")


def _main(argv: list[str]) -> None:
    """Study entry point: ``STUDY JSON-ARGS OUT-PATH``; the result is written to OUT-PATH."""
    import json

    study, args, out = argv[0], json.loads(argv[1]), Path(argv[2])
    if study not in _STUDIES:
        raise SystemExit(f"unknown study {study!r}; choose one of {sorted(_STUDIES)}")
    result = _STUDIES[study](**args)
    files.write_text(out, json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1:])
