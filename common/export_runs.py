"""Export experiments on trained baselines: hw5's parity checks, its measurement of every format
at batch 1 and at a larger batch, and its registry rows (:mod:`common.export` writes the files)."""

from __future__ import annotations

from typing import Mapping

from common import env


def parity(baselines: Mapping, exports: Mapping, formats: list[str], images: int, *,
           threads: int = env.DEFAULT_THREADS) -> tuple[dict, dict]:
    """Run every exported file on ``images`` test images one at a time against the PyTorch module
    and score it on the whole test split. Returns ({(workload, fmt): {"load_s", "parity",
    "same_top1", quality...}}, the PyTorch reference outputs by workload and, for the classifier,
    its test predictions under (workload, "top1")). ``parity`` is the largest output difference
    after :func:`common.export.comparable`; ``same_top1`` whether every test prediction agrees.
    The classifier's metrics and top-1 comparison come from one pass over the test split on
    :data:`common.env.DEFAULT_THREADS` threads, the pass :func:`common.workloads.evaluate` makes."""
    import time

    import numpy as np

    from common import backends, export, workloads
    from common.metrics import classification_metrics

    checks, reference = {}, {}
    for w, bl in baselines.items():
        x = workloads.sample_inputs(bl, images)
        torch_backend = backends.load(bl.model, threads=threads)
        reference[w] = np.concatenate([torch_backend(x[i:i + 1]) for i in range(len(x))])
        if w == "resnet18":
            reference[w, "top1"] = workloads.predict_classes(bl.model, bl.data.x_test)
        for f in formats:
            e = exports[w, f]
            if e.skipped:
                continue
            t0 = time.perf_counter()
            b = backends.load(e.path, threads=threads)
            load_s = time.perf_counter() - t0
            if w == "resnet18":   # one pass over the test split gives the metrics and the top-1 comparison
                preds = workloads.predict_classes(b if threads == env.DEFAULT_THREADS else
                                                  backends.load(e.path, threads=env.DEFAULT_THREADS), bl.data.x_test)
                quality = (workloads.evaluate(bl) if f == "pytorch" else   # the module itself, as every notebook scores it
                           classification_metrics(bl.data.y_test.numpy(), preds, n_classes=len(bl.data.classes)))
                same = bool((preds == reference[w, "top1"]).all())
            else:
                quality, same = workloads.evaluate(bl, None if f == "pytorch" else e.path), None
            checks[w, f] = {"load_s": load_s, "same_top1": same, **quality,
                            "parity": export.max_diff(w, f, b, x, reference[w], bl.config.img_size, threads=threads)}
    return checks, reference


def measure_formats(baselines: Mapping, exports: Mapping, exports_batch: Mapping, formats: list[str],
                    reference: Mapping, batch: int, *, threads: int = env.DEFAULT_THREADS,
                    batch_rounds: int = 4) -> tuple[dict, dict, dict]:
    """Measure every exported file (size, peak RAM; GPU when there is one) at batch 1 and at
    ``batch`` (the batch-``batch`` re-export where there is one, first checked to return ``batch``
    results equal to PyTorch's), then time each workload's formats against PyTorch in one interleaved
    run per batch size. Returns ({(workload, fmt): (batch-1 Measurement, batch Measurement,
    batch file)}, {workload: batch-1 comparison}, {workload: batch comparison})."""
    import numpy as np

    from common import backends, export, measure, speed, workloads

    measured, one, many = {}, {}, {}
    for (w, f), e in exports.items():
        if e.skipped:
            continue
        bl = baselines[w]
        m1 = measure.measure(e.path, bl.input_shape, threads=threads, cpu=False, label=f"{w} {f}")
        path_b = exports_batch[w, f].path if (w, f) in exports_batch else e.path
        x_b = workloads.sample_inputs(bl, batch)
        diff = np.abs(export.comparable(w, f, backends.load(path_b, threads=threads)(x_b), bl.config.img_size)
                      - export.comparable(w, "pytorch", reference[w][:batch], bl.config.img_size)).max()
        if not diff <= 1e-3:
            raise AssertionError(f"{w} {f} at batch {batch} differs from PyTorch by {diff:.2e}")
        mb = measure.measure(path_b, (batch, *bl.input_shape[1:]), threads=threads, cpu=False, ram=False,
                             label=f"{w} {f} b{batch}")
        measured[w, f] = (m1, mb, path_b)
    for w, bl in baselines.items():
        fmts = [f for f in formats if (w, f) in measured]
        one[w] = speed.compare("pytorch", {f: exports[w, f].path for f in fmts}, bl.input_shape, threads=threads,
                               desc=f"{w} batch 1")
        many[w] = speed.compare("pytorch", {f: measured[w, f][2] for f in fmts}, (batch, *bl.input_shape[1:]),
                                threads=threads, rounds=batch_rounds, block=3, warmup=1, desc=f"{w} batch {batch}")
    return measured, one, many


def rows(baselines: Mapping, exports: Mapping, checks: Mapping, measured: Mapping, one: Mapping, many: Mapping,
         batch: int, *, bench: Mapping | None = None, e2e: Mapping | None = None) -> list[dict]:
    """hw5's registry rows, one per (workload, format): quality from ``checks``, size and memory
    from ``measured``, the batch-1 speed-up from ``one``; the notes carry export and load times,
    parity, the batch-``batch`` throughput and, for the detector, ultralytics' benchmark figure
    (``bench``, by format) and its predictor's pre / inference / post times (``e2e``)."""
    from common import crosscheck, data, measure, registry

    bench, e2e, out = bench or {}, e2e or {}, []
    for (w, f), e in exports.items():
        bl = baselines[w]
        key = ("hw5", w, data.dataset_label(bl.config.dataset), f, "export")
        figures = measure.model_figures(bl.model, bl.input_shape)
        if e.skipped:
            out.append(registry.row(*key, None, figures, notes=e.skipped))
            continue
        c, (m1, mb, _), sb = checks[w, f], measured[w, f], many[w][f]
        notes = [f"export {e.export_seconds:.1f} s; load {c['load_s']:.2f} s; parity max|diff| {c['parity']:.1e}; "
                 f"batch {batch}: {sb.median_ms:.1f} ms, {batch * 1000 / sb.median_ms:.0f} images/s, "
                 f"{sb.speedup:.2f}x PyTorch (95 % CI {sb.lo:.2f}-{sb.hi:.2f})"
                 + (f"; GPU batch {batch}: {mb.gpu.median_ms:.3f} ms" if mb.gpu else "")]
        if w == "yolov8n" and f in bench:      # ultralytics' benchmark times the detector only
            notes.append(f"ultralytics benchmark {bench[f]['ms']:.3f} ms")
        timings = {}
        if w == "yolov8n" and f in e2e:
            t = e2e[f]
            timings = dict(pre_ms=t["preprocess_ms"], infer_ms=t["inference_ms"], post_ms=t["postprocess_ms"],
                           fitness=crosscheck.fitness(c))
        out.append(registry.row(*key, {k: v for k, v in c.items() if k not in ("parity", "load_s", "same_top1")},
                                figures, m1.row(), one[w][f].columns(), timings, notes=notes))
    return out
