"""Pruning experiments on a trained baseline: the steps hw3 and the capstone run that need data,
training or evaluation (:mod:`common.pruning` holds the algorithms, which need none of those)."""

from __future__ import annotations

from common import pruning


def finetune(bl, model, *, x_bn=None, bn_images: int = 256, seed: int = 0, progress: bool = False,
             **kwargs) -> list[dict]:
    """Fine-tune a pruned copy of ``bl``'s model in place with BatchNorm re-estimated first.

    :func:`common.train.finetune` re-estimates BatchNorm itself for the classifier; for the
    detector this does it, on ``x_bn`` (or ``bn_images`` training images drawn with ``seed``).
    Without it the detector's short fine-tune starts from the cut model's stale statistics, and
    ultralytics' BatchNorm momentum (0.03) barely moves them in half an epoch: L1 pruning of 30 %
    of the channels, fine-tuned half an epoch, scored mAP50-95 0.19 from stale statistics and
    0.43 from re-estimated ones (seed 0). ``kwargs`` (``epochs``, ``lr``, ``images``) go to
    :func:`common.train.finetune`; returns its history."""
    import torch

    from common import train, workloads

    if bl.config.workload != "resnet18":
        if x_bn is None:
            x_bn = workloads.sample_inputs(bl, bn_images, "train", seed=seed)
        train.recalibrate_bn(model, torch.as_tensor(x_bn))
    return train.finetune(bl, model, seed=seed, progress=progress, **kwargs)


def sensitivity_scan(bl, groups: dict[str, list[str]], sparsity: float, metric: str, *,
                     images: int | None = None, seed: int = 0, desc: str = "sensitivity"
                     ) -> tuple[float, dict[str, float]]:
    """Prune one group at a time to ``sparsity`` (local magnitude, no fine-tune) and score it on
    val (``images`` random validation images of the classifier when given). Returns the unpruned
    validation score and the drop of each group."""
    import dataclasses

    from tqdm import tqdm

    from common import data, workloads

    sparsity = pruning.check_ratio(sparsity)
    scan = bl if images is None or bl.config.workload != "resnet18" else dataclasses.replace(
        bl, data=data.subset(bl.data, images, "val", seed))
    ref = workloads.evaluate(scan, split="val")[metric]
    drops = {}
    for g, names in tqdm(groups.items(), desc=desc):
        m = pruning.prune_unstructured(bl.model, 0, "local", layers={n: sparsity for n in names})
        drops[g] = ref - workloads.evaluate(scan, pruning.finalized(m), split="val")[metric]
    return ref, drops


#: :func:`unstructured_sweep`'s key of its control: nothing pruned, the same fine-tune
CONTROL = ("control", 0.0, True)


def unstructured_sweep(bl, sparsities: list[float], *, seed: int, desc: str = "", **finetune_kwargs
                       ) -> tuple[dict, dict]:
    """Global and local L1 magnitude pruning of ``bl``'s model at every sparsity, scored as they
    are, and the global one again after :func:`finetune` (``finetune_kwargs``) with its masks
    attached, so pruned weights stay zero. Returns ({(scope, sparsity, fine_tuned): metrics and
    the measured "sparsity"}, {sparsity: the fine-tuned global model, masks attached}); the first
    dict also holds the control ``CONTROL``: the same fine-tune of the unpruned model, which says
    what the fine-tune alone does to the metric."""
    import copy

    from tqdm import tqdm

    from common import size, workloads

    scores, masked = {}, {}
    ctrl = copy.deepcopy(bl.model)
    finetune(bl, ctrl, seed=seed, **finetune_kwargs)
    scores[CONTROL] = {**workloads.evaluate(bl, ctrl), "sparsity": size.sparsity(ctrl)}
    for s in tqdm(sparsities, desc=desc or f"{bl.config.workload} sweep"):
        for scope in ("local", "global"):
            pruned = pruning.prune_unstructured(bl.model, s, scope)
            fin = pruning.finalized(pruned)
            scores[scope, s, False] = {**workloads.evaluate(bl, fin), "sparsity": size.sparsity(fin)}
        finetune(bl, pruned, seed=seed, **finetune_kwargs)   # the global one; BatchNorm re-estimated first
        fin = pruning.finalized(pruned)
        masked[s] = pruned
        scores["global", s, True] = {**workloads.evaluate(bl, fin), "sparsity": size.sparsity(fin)}
    return scores, masked


def sparse_files(bl, masked: dict, out, *, reference: str, threads: int, rounds: int = 8) -> tuple[dict, "object"]:
    """Every fine-tuned sparse model of :func:`unstructured_sweep` (``masked``) and, as sparsity 0, the
    unpruned model (the timing's control), each saved dense, gzipped and as bitmask + values
    (:func:`common.pruning.save_sparse`; it must reload identical, with identical outputs), measured,
    and timed against the baseline (named ``reference``) in one interleaved run. Returns
    ({sparsity: {"dense", "gzip", "sparse" (MB), "m" (Measurement), "variant"}}, the comparison,
    whose names are the sparsities as "0.50")."""
    from pathlib import Path

    import torch
    from tqdm import tqdm

    from common import measure, size, speed, workloads

    w, out = bl.config.workload, Path(out)
    x = torch.as_tensor(workloads.sample_inputs(bl, 4))
    first = (lambda y: y[0]) if w == "yolov8n" else (lambda y: y)
    files = {}
    for s in tqdm([0.0, *masked], desc=f"{w} sizes"):
        fin = bl.model if s == 0 else pruning.finalized(masked[s])
        v = workloads.variant(bl, fin, out / f"sparse-{s:.2f}")
        sp = pruning.save_sparse(fin, out / f"sparse-{s:.2f}" / "sparse.npz")
        back = pruning.load_sparse(bl.model, sp)
        assert pruning.identical(fin, back)
        with torch.no_grad():
            assert torch.equal(torch.as_tensor(first(fin(x))), torch.as_tensor(first(back.eval()(x))))
        m = measure.measure(v.path, bl.input_shape, threads=threads, cpu=False, ram=False, gpu=False, label=f"{w} sparse {s}")
        files[s] = {"dense": size.size_mb(v.path), "gzip": size.gzip_mb(v.path), "sparse": size.size_mb(sp), "m": m, "variant": v}
    timed = speed.compare(reference, {reference: bl.path, **{f"{s:.2f}": f["variant"].path for s, f in files.items()}},
                          bl.input_shape, threads=threads, rounds=rounds, desc=f"{w} sparse timing")
    return files, timed


def nonuniform_vs_global(bl, plan: dict[str, float], seeds: list[int], *, seed: int, metric: str,
                         **finetune_kwargs) -> dict:
    """The sensitivity-guided model (per-layer ``plan`` ratios) against global pruning at the same
    measured sparsity, each given the same :func:`finetune` with every seed in ``seeds``.
    Returns {"non-uniform", "global": seed ``seed``'s metrics (+ "sparsity", "model"), "per_seed":
    {tag: [``metric`` per seed]}, "verdict": :func:`common.seeds.verdict` of the two}."""
    from common import seeds as seeds_mod
    from common import size, workloads

    overall = size.sparsity(pruning.finalized(pruning.prune_unstructured(bl.model, 0, "local", layers=plan)))
    got = {"per_seed": {"non-uniform": [], "global": []}}
    for s in seeds:
        for tag in ("non-uniform", "global"):
            model = (pruning.prune_unstructured(bl.model, 0, "local", layers=plan) if tag == "non-uniform"
                     else pruning.prune_unstructured(bl.model, round(overall, 4), "global"))
            finetune(bl, model, seed=s, **finetune_kwargs)
            fin = pruning.finalized(model)
            res = {**workloads.evaluate(bl, fin), "sparsity": size.sparsity(fin), "model": fin}
            got["per_seed"][tag].append(res[metric])
            if s == seed:
                got[tag] = res
    got["verdict"] = seeds_mod.verdict("non-uniform", got["per_seed"]["non-uniform"], "global", got["per_seed"]["global"])
    return got


def structured_grid(bl, pruned: dict, out, *, seed: int, epochs: float, reference: str, threads: int,
                    bn_images: int = 256) -> tuple[dict, "object"]:
    """Every channel-pruned model of ``pruned`` ({(criterion, ratio): model as cut}) scored three
    times: as cut, with BatchNorm re-estimated on ``bn_images`` training images (no weight change)
    and after ``epochs`` of :func:`finetune` (from the same statistics); each saved, measured and
    timed against the baseline (named ``reference``) in one interleaved run. Returns
    ({(criterion, ratio): {"before", "bn", "after", "figures", "m", "variant"}}, the comparison,
    whose names are "l1 0.50")."""
    import copy
    from pathlib import Path

    from tqdm import tqdm

    from common import measure, speed, train, workloads

    w, out = bl.config.workload, Path(out)
    x_bn = _grid_bn_inputs(bl, bn_images, seed)
    grid = {}
    for (crit, r), m0 in tqdm(pruned.items(), desc=f"{w} structured"):
        m = copy.deepcopy(m0)
        figures = measure.model_figures(m, bl.input_shape)
        before = workloads.evaluate(bl, m)
        bn = workloads.evaluate(bl, train.recalibrate_bn(copy.deepcopy(m), x_bn))   # BN statistics only
        _grid_finetune(bl, m, x_bn, epochs, seed)
        after = workloads.evaluate(bl, m)
        v = workloads.variant(bl, m, out / f"{crit}-{r:.2f}")
        lat = measure.measure(v.path, bl.input_shape, threads=threads, cpu=False, ram=False, gpu=False, label=f"{w} {crit} {r}")
        grid[crit, r] = {"before": before, "bn": bn, "after": after, "figures": figures, "m": lat, "variant": v}
    timed = speed.compare(reference, {reference: bl.path, **{f"{c} {r:.2f}": z["variant"].path for (c, r), z in grid.items()}},
                          bl.input_shape, threads=threads, desc=f"{w} structured timing")
    return grid, timed


def _grid_bn_inputs(bl, bn_images: int, seed: int):
    """The training images :func:`structured_grid` and :func:`structured_control` re-estimate BatchNorm on."""
    import torch

    from common import workloads

    return torch.as_tensor(workloads.sample_inputs(bl, bn_images, "train", seed=seed))


def _grid_finetune(bl, model, x_bn, epochs: float, seed: int) -> None:
    """The structured grid's fine-tune: :func:`finetune` from statistics re-estimated on ``x_bn``, at
    the classifier's training learning rate (the detector: ultralytics' own)."""
    lr = bl.config.lr if bl.config.workload == "resnet18" else None
    finetune(bl, model, x_bn=x_bn, epochs=epochs, seed=seed, lr=lr)


def structured_control(bl, *, seed: int, epochs: float, bn_images: int = 256) -> dict[str, float]:
    """The control of :func:`structured_grid`: the unpruned model given exactly the grid's fine-tune
    (same BatchNorm images, epochs, learning rate and seed). Its metrics say what that fine-tune does
    on its own, so a pruned model's loss is read against it as well as against the baseline."""
    import copy

    from common import workloads

    m = copy.deepcopy(bl.model)
    _grid_finetune(bl, m, _grid_bn_inputs(bl, bn_images, seed), epochs, seed)
    return workloads.evaluate(bl, m)


def criteria_over_seeds(bl, criteria: list[str], ratio: float, seeds: list[int], first: dict[str, float], *,
                        seed: int, metric: str, epochs: float, desc: str = "") -> dict[str, list[float]]:
    """Each criterion's ``metric`` after pruning ``ratio`` of the channels and ``epochs`` of
    :func:`finetune`, once per seed in ``seeds``; seed ``seed``'s values are ``first`` (already
    measured, not repeated). Returns {criterion: [value per seed, in ``seeds`` order]}."""
    import torch
    from tqdm import tqdm

    from common import workloads

    example, out = torch.zeros(bl.input_shape), {}
    lr = bl.config.lr if bl.config.workload == "resnet18" else None
    for crit in criteria:
        vals = []
        for s in tqdm(seeds, desc=desc or f"{bl.config.workload} {crit} {ratio} over seeds"):
            if s == seed:
                vals.append(first[crit])
                continue
            m = pruning.prune_channels(bl.model, example, ratio, crit)
            finetune(bl, m, epochs=epochs, seed=s, lr=lr)
            vals.append(workloads.evaluate(bl, m)[metric])
        out[crit] = vals
    return out


def dense_smaller(bl, width: int, epochs: int, seeds: list[int]) -> dict[int, dict]:
    """The control of pruning at equal FLOPs (the classifier): a dense ResNet-18 with ``width``
    channels in its first stage (:func:`common.distill.build_student_resnet`; width 32 is the
    64-wide baseline with half of every layer's channels, the shape L1 50 % cuts it to) trained
    from scratch on ``bl``'s data with ``bl``'s recipe for ``epochs``, once per seed, on
    :data:`common.workloads.TRAIN_THREADS` threads. Trained once per machine and kept in the
    machine-wide cache like the hw1 baselines, keyed by the baseline, width, epochs, seed and the
    training code. Returns {seed: {"model", "quality" (test), "history", "cached"}}."""
    import hashlib
    import json
    from pathlib import Path

    import torch
    from tqdm import tqdm

    from common import distill, env, files, workloads

    if bl.config.workload != "resnet18":
        raise ValueError(f"a dense smaller control is built for resnet18 only, not {bl.config.workload}")
    if not (isinstance(width, int) and 1 <= width < 64) or not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"need 1 <= width < 64 (the baseline's) and epochs >= 1, got width {width!r}, epochs {epochs!r}")
    code = hashlib.sha1(Path(distill.__file__).read_bytes()).hexdigest()[:6]
    root = (env.shared_cache_dir() or env.artifacts_dir()) / "dense-smaller"
    out, before = {}, torch.get_num_threads()
    for s in tqdm(seeds, desc=f"dense width-{width} ResNet-18, {epochs} epochs, over seeds"):
        path = root / f"{bl.config.key()}-w{width}-e{epochs}-s{s}-{workloads.training_fingerprint()}-{code}.pt"
        cached = path.exists()
        if cached:
            saved = torch.load(path, map_location="cpu", weights_only=False)
            model, history = saved["model"].eval(), saved["history"]
        else:
            env.set_threads(workloads.TRAIN_THREADS)
            try:
                run = distill.train_student_resnet(bl.data, width=width, epochs=epochs, lr=bl.config.lr,
                                                   batch=bl.config.batch, seed=s)
            finally:
                env.set_threads(before)
            model, history = run["model"].eval(), run["history"]
            with files.atomic(path) as tmp:
                torch.save({"model": model, "history": history, "threads": workloads.TRAIN_THREADS,
                            "versions": json.dumps(env.versions(), sort_keys=True)}, tmp)
        out[s] = {"model": model, "quality": workloads.evaluate(bl, model), "history": history, "cached": cached}
    return out


def final_model(bl, out, *, ratio: float, criterion: str, epochs: float, seed: int, metric: str,
                reference: str, threads: int = 2, warmup: int = 10, repeats: int = 50) -> dict:
    """The chosen channel-pruned model: ``ratio`` of the channels cut by ``criterion``, ``epochs`` of
    :func:`finetune`, saved (it must reload with identical outputs and fewer parameters), exported to ONNX and OpenVINO (each within 1e-3 of PyTorch and
    within 2e-3 of its ``metric``), every file measured, and all timed in one interleaved run against
    the baseline (named ``reference``) and the baseline's own ONNX export ("baseline onnx").

    Returns {"variant", "params", "history", "runs": {fmt: {"quality", "m", "diff", "path"}}, "speed"}."""
    from pathlib import Path

    import torch

    from common import export, measure, size, speed, workloads

    out, w = Path(out), bl.config.workload
    m = pruning.prune_channels(bl.model, torch.zeros(bl.input_shape), ratio, criterion)
    hist = finetune(bl, m, epochs=epochs, seed=seed, lr=bl.config.lr if w == "resnet18" else None)
    v = workloads.variant(bl, m, out / f"final-{criterion}-{ratio:.2f}")
    back = torch.load(v.path, map_location="cpu", weights_only=False).eval()
    assert size.count_params(back) == size.count_params(m) < size.count_params(bl.model)
    x = torch.as_tensor(workloads.sample_inputs(bl, 8))
    with torch.no_grad():
        ref = m(x)[0] if w == "yolov8n" else m(x)
        assert torch.equal(ref, back(x)[0] if w == "yolov8n" else back(x))
    q = workloads.evaluate(bl, v.model)
    files = {"pytorch": (v.path, q, 0.0)}
    for fmt in ("onnx", "openvino"):
        e = export.export(v, fmt, out / "final-export")
        assert not e.skipped, e.skipped
        diff = export.max_diff(w, fmt, e.path, x.numpy(), ref.numpy(), bl.config.img_size, threads=threads)
        assert diff <= 1e-3, f"{w} {fmt} differs from PyTorch by {diff:.2e}"
        files[fmt] = (e.path, workloads.evaluate(v, e.path), diff)
    runs = {}
    for fmt, (path, qq, diff) in files.items():
        assert abs(qq[metric] - q[metric]) < 2e-3, (fmt, qq[metric], q[metric])
        mm = measure.measure(path, bl.input_shape, threads=threads, warmup=warmup, repeats=repeats, cpu=False,
                             ram=fmt == "pytorch", gpu=fmt == "pytorch", label=f"{w} pruned {fmt}")
        runs[fmt] = {"quality": qq, "m": mm, "diff": diff, "path": path}
    base_onnx = export.export(bl, "onnx", out / "baseline-export").path
    timed = speed.compare(reference, {reference: bl.path, "baseline onnx": base_onnx, **{f: r["path"] for f, r in runs.items()}},
                          bl.input_shape, threads=threads, desc=f"{w} final timing")
    return {"variant": v, "params": size.count_params(back), "history": hist, "runs": runs, "speed": timed}


def registry_rows(bl, base: dict, sweep: dict, sizes: dict, sparse, nonuniform: dict, struct: dict, structured,
                  final: dict, *, struct_epochs: float, final_epochs: float, seed: int, seeds: list[int],
                  metric: str, reference: str, threads: int) -> list[dict]:
    """hw3's registry rows of one workload (``bl``'s), from that workload's results: the unstructured
    sweep (``sweep``, from :func:`unstructured_sweep`; the fine-tuned global models with their files'
    ``sizes`` and ``sparse`` timing, from :func:`sparse_files`), the sensitivity-guided model
    (``nonuniform``, from :func:`nonuniform_vs_global`), the structured grid (``struct`` and its
    timing ``structured``, from :func:`structured_grid`) and the chosen final model in each format
    (``final``, from :func:`final_model`). ``base`` holds the baseline's params and GFLOPs."""
    from common import data, measure, registry, speed

    key = ("hw3", bl.config.workload, data.dataset_label(bl.config.dataset))
    dense = {"params": base["params"], "gflops": base["gflops"], "threads": threads}
    rows = []
    for (scope, s, ft), r in sweep.items():
        if (scope, s, ft) == CONTROL:   # the fine-tune alone: read in the notebook, not a compressed model
            continue
        name, method = f"unstructured {scope} {s:.2f}{' ft' if ft else ''}", f"L1 magnitude, {scope}" + (" + fine-tune" if ft else "")
        if scope == "global" and ft and s in sizes:   # the levels whose files were written
            z = sizes[s]
            rows.append(registry.row(*key, name, method, r, dense, sparse[f"{s:.2f}"].columns(), sparsity=r["sparsity"],
                                     size_mb=z["dense"], gzip_mb=z["gzip"], speedup_vs=reference,
                                     notes=[f"{speed.DENSE_NOTE} (the ratio is a check that it is ~1); bitmask + values "
                                            f"{z['sparse']:.4f} MB; dense file unchanged", *z["m"].notes]))
        else:
            rows.append(registry.row(*key, name, method, r, dense, sparsity=r["sparsity"]))
    r = nonuniform["non-uniform"]
    rows.append(registry.row(*key, "unstructured non-uniform ft", "L1 magnitude, per-layer ratios from sensitivity + fine-tune",
                             r, dense, sparsity=r["sparsity"],
                             notes=f"seed {seed}; global pruning at the same sparsity + the same fine-tune: {metric} "
                                   f"{nonuniform['global'][metric]:.4f}; over seeds {seeds}: {nonuniform['verdict']}"))
    for (crit, ratio), z in struct.items():
        rows.append(registry.row(*key, f"structured {crit} {ratio:.2f} ft", f"torch-pruning {crit.upper()} channels + fine-tune",
                                 z["after"], z["figures"], z["m"].row(), structured[f"{crit} {ratio:.2f}"].columns(),
                                 threads=threads, notes=f"{struct_epochs} fine-tune epochs; as cut {metric} "
                                 f"{z['before'][metric]:.4f}, BatchNorm re-estimated {z['bn'][metric]:.4f}"))
    for fmt, z in final["runs"].items():
        rows.append(registry.row(*key, f"structured l1 0.50 final {fmt}", f"torch-pruning L1 50 % + {final_epochs} epochs, {fmt}",
                                 z["quality"], measure.model_figures(final["variant"].model, bl.input_shape), z["m"].row(),
                                 final["speed"][fmt].columns(), threads=threads, notes=f"parity max|diff| {z['diff']:.1e}"))
    return rows
