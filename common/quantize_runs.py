"""Quantization experiments over seeds (hw2): quantization-aware training, and the two controls
that say what QAT adds beyond what its fine-tune alone would give.

- :func:`qat`: every weight fake-quantized to ``bits`` bits (:func:`common.quantize.fake_quantize`),
  then ``rounds`` short fine-tunes with the baseline's recipe (:func:`common.train.finetune`), the
  model evaluated after each; once per seed.
- :func:`qat_controls`: *post-training rounding + BatchNorm re-estimated* (what the classifier's
  fine-tune does before its first step, with no step at all) and *the same fine-tune in float,
  then rounding* (the same seeds, batches, steps and learning rate, without the quantizer in the
  forward pass). A QAT gain larger than both is the quantizer-aware training itself.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from common import cluster, quantize, train, workloads

class Variants(dict):
    """hw2's quantized variants: {(workload, name): {"path", "quality", "method", "kind"}}, in the
    order they were made. :meth:`record` evaluates a file once and keeps it; :meth:`quality` reads
    the workload's primary metric (:data:`common.registry.PRIMARY`) back."""

    def __init__(self, baselines: Mapping) -> None:
        super().__init__()
        self.baselines = baselines

    def record(self, workload: str, name: str, path, method: str, quality: Mapping | None = None,
               kind: str = "int8") -> Mapping:
        """Evaluate ``path`` on ``workload``'s test split (unless ``quality`` is given), keep it
        as variant ``name`` and return its metrics."""
        from common.registry import PRIMARY

        if workload not in self.baselines:
            raise ValueError(f"unknown workload {workload!r}; choose one of {sorted(self.baselines)}")
        if kind not in ("fp32", "fp16", "int8"):
            raise ValueError(f"unknown kind {kind!r}; choose one of fp32, fp16, int8")
        if quality is None:
            quality = workloads.evaluate(self.baselines[workload], path)
        assert PRIMARY[workload] in quality, f"{name}: no {PRIMARY[workload]} in {sorted(quality)}"
        self[workload, name] = {"path": path, "quality": quality, "method": method, "kind": kind}
        return quality

    def quality(self, workload: str, name: str) -> float:
        """Variant ``name``'s primary metric (accuracy, mAP50-95)."""
        from common.registry import PRIMARY

        return self[workload, name]["quality"][PRIMARY[workload]]


def measured_rows(runs: Variants, *, threads: int, warmup: int, repeats: int,
                  ram: Sequence[str] = ("fp32 pytorch", "int8 openvino")) -> tuple[list[dict], dict]:
    """Every variant of ``runs`` measured (file size, batch-1 latency; peak RAM in a fresh process
    for the names in ``ram``) and made a registry row (:func:`common.registry.row`). A skipped
    variant (``"skipped"``) keeps its reason as its note; fp16 on CUDA (no file) its GPU latency;
    the calibration sweep's files ("calib" in the name) are measured but say they are not timed
    against the others. Returns (rows, {(workload, name): Measurement of each measured file})."""
    from tqdm import tqdm

    from common import data, measure, registry, size

    rows, measured = [], {}
    for (w, name), r in tqdm(list(runs.items()), desc="measuring"):
        bl = runs.baselines[w]
        key = ("hw2", w, data.dataset_label(bl.config.dataset), name, r["method"])
        base = {"params": size.count_params(bl.model), "threads": threads}
        if r.get("skipped"):
            rows.append(registry.row(*key, r["quality"], base, notes=r["skipped"]))
        elif r["path"] is None:                            # fp16 on CUDA: GPU latency only
            rows.append(registry.row(*key, r["quality"], base, latency_gpu_ms=r["gpu"].median_ms,
                                     notes="gpu: model.half(), median of batch-1 runs"))
        else:
            m = measured[w, name] = measure.measure(r["path"], bl.input_shape, threads=threads, warmup=warmup,
                                                    repeats=repeats, cpu=False, ram=name in ram, label=f"{w} {name}")
            fig = m.row()
            if "calib" in name:   # left out of the paired timing run, so its note must not name one
                fig["notes"] = "; ".join(n for n in fig["notes"].split("; ") if not n.startswith(measure.PAIRED_NOTE))
            rows.append(registry.row(*key, r["quality"], base, fig, notes=[
                "not timed: the same int8 graph as int8 onnx, only the calibration differs" if "calib" in name else ""]))
    return rows, measured


#: the names of the two controls, as tables and verdicts print them
PTQ_BN = "rounding + BN re-estimated"
FLOAT_FT = "float fine-tune, then rounding"


def _steps(bl, hist: list[dict], ft: Mapping[str, Any]) -> int:
    """Optimizer steps of one fine-tune: the detector's history counts them; the classifier's
    are its images over the batch size."""
    if hist and "step" in hist[-1]:
        return int(hist[-1]["step"])
    return math.ceil(ft.get("images", len(bl.data.y_train)) / bl.config.batch)


def _rounds(bl, model, rounds: int, lr: float, seed: int, ft: Mapping[str, Any], after=None) -> list:
    """``rounds`` fine-tunes of ``model`` in place (round r draws its batches with seed
    ``seed * rounds + r``); after each, the step count so far, or ``(steps, after(model))``."""
    steps, out = 0, []
    for r in range(rounds):
        hist = train.finetune(bl, model, seed=seed * rounds + r, lr=lr, progress=False, **ft)
        steps += _steps(bl, hist, ft)
        out.append(steps if after is None else (steps, after(model)))
    return out


def rounded(model, bits: int):
    """A copy of ``model`` with every quantizable weight rounded to ``bits`` bits (symmetric, per
    channel) and baked in as a plain parameter: post-training rounding."""
    return cluster.untie(quantize.fake_quantize(copy.deepcopy(model), bits))


def qat(bl, bits: int, *, rounds: int, lr: float, seeds: Sequence[int], metric: str,
        ft: Mapping[str, Any], start: float | None = None, progress=None):
    """Quantization-aware training of ``bl.model`` once per seed. Returns ``(curves, models)``:
    per seed the curve ``[(steps, metric), ...]`` that starts at the rounded model (``start``, or
    measured here) and has one point per round, and the trained model with its rounded weights
    baked in (:func:`common.cluster.untie`)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if start is None:
        start = workloads.evaluate(bl, rounded(bl.model, bits))[metric]
    curves, models = {}, {}
    for s in (progress or (lambda it: it))(list(seeds)):
        m = quantize.fake_quantize(copy.deepcopy(bl.model), bits)
        score = lambda model: workloads.evaluate(bl, cluster.untie(copy.deepcopy(model)))[metric]  # noqa: E731
        curves[s] = [(0, start), *_rounds(bl, m, rounds, lr, s, ft, after=score)]
        models[s] = cluster.untie(m)
    return curves, models


def qat_controls(bl, bits: int, *, rounds: int, lr: float, seeds: Sequence[int], metric: str,
                 ft: Mapping[str, Any], x_bn, progress=None):
    """The two controls of :func:`qat` on the same budget, as a tidy table: one row per measured
    model with ``control``, ``seed`` (None for the deterministic one), ``steps`` and ``metric``.
    ``x_bn``: the training images BatchNorm is re-estimated on."""
    import pandas as pd

    bn = train.recalibrate_bn(quantize.fake_quantize(copy.deepcopy(bl.model), bits), x_bn)
    rows = [{"control": PTQ_BN, "seed": None, "steps": 0,
             metric: workloads.evaluate(bl, cluster.untie(bn))[metric]}]
    for s in (progress or (lambda it: it))(list(seeds)):
        m = copy.deepcopy(bl.model)
        steps = _rounds(bl, m, rounds, lr, s, ft)[-1]
        rows.append({"control": FLOAT_FT, "seed": s, "steps": steps,
                     metric: workloads.evaluate(bl, rounded(m, bits))[metric]})
    return pd.DataFrame(rows)


def onnx_range_study(bl, reduced: str | Path, onnx_fp32: str | Path, out: str | Path, *, calibration: int,
                     seed: int = 0, metric: str, threads: int = 2) -> dict:
    """ONNX Runtime's default full-range int8 weights against the registry's ``reduce_range`` model
    ``reduced``: the full-range model quantized from ``onnx_fp32`` into ``out`` on the same
    ``calibration`` images, each model's kernel error against the float simulation
    (:func:`common.quantize_onnx.kernel_error`, 8 test images), the full-range model's ``metric``, and
    its speed against ``reduce_range`` in one interleaved run. Returns {"err", "q_full", "speed"}."""
    from common import speed

    exclude = quantize.yolo_postprocess_nodes(onnx_fp32) if bl.config.workload == "yolov8n" else []
    full = quantize.onnx_int8(onnx_fp32, Path(out), quantize.calibration_images(bl, calibration, seed),
                              exclude=exclude, reduce_range=False)
    x = workloads.sample_inputs(bl, 8)
    err = {name: quantize.kernel_error(path, x, threads=threads) for name, path in (("reduce_range", reduced),
                                                                                     ("full range", full))}
    pair = speed.compare("reduce_range", {"reduce_range": reduced, "full range": full}, bl.input_shape,
                         threads=threads, desc=f"{bl.config.workload} int8 full range vs reduce_range")
    return {"err": err, "q_full": workloads.evaluate(bl, full)[metric], "speed": pair["full range"]}
