"""Distillation experiments on a trained teacher: the runs hw6 repeats over seeds
(:mod:`common.distill` holds the losses, the students and the trainer)."""

from __future__ import annotations

from pathlib import Path


def classifier_sweep(teacher, ds, sweep: list[tuple[float, float]], *, seed: int, **student
                     ) -> tuple[dict[str, dict], str, tuple[float, float]]:
    """The scratch student and one distilled student per (temperature, alpha) in ``sweep``, all
    trained on ``ds`` from seed ``seed`` with one recipe (``student``: ``width``, ``epochs``,
    ``lr``, ``batch`` of :func:`common.distill.train_student_resnet`); ``teacher``'s logits are
    computed once (:class:`common.distill.CachedTeacher`). Returns (runs keyed ``"scratch"`` and
    ``"kd T=.. a=.."``, the KD key with the highest validation accuracy (ties: the first in
    sweep order; the test split plays no part in the choice), its (temperature, alpha))."""
    from tqdm import tqdm

    from common import distill

    cache = distill.CachedTeacher(teacher)
    runs = {"scratch": distill.train_student_resnet(ds, seed=seed, **student)}
    settings = {}
    for t, a in tqdm(sweep, desc="KD sweep"):
        settings[key := f"kd T={t:g} a={a:g}"] = (t, a)
        runs[key] = distill.train_student_resnet(ds, seed=seed, loss_fn=cache.loss_fn(t, a), **student)
    best = max(settings, key=lambda k: runs[k]["val"])
    return runs, best, settings[best]


def kd_vs_scratch(teacher, ds, temperature: float, alpha: float, seeds: list[int], *,
                  reuse: dict[int, tuple[dict, dict]] | None = None, **student) -> dict[str, dict[int, dict]]:
    """A scratch and a distilled student (``temperature``, ``alpha``) per seed on ``ds``, each pair
    trained alike (``student``: the recipe of :func:`classifier_sweep`). ``reuse``: {seed:
    (scratch run, KD run)} already trained with that recipe, taken as they are. Returns
    {"scratch" | "kd": {seed: run}} in ``seeds`` order."""
    from tqdm import tqdm

    from common import distill

    out: dict[str, dict[int, dict]] = {"scratch": {}, "kd": {}}
    for s in tqdm(seeds, desc=f"seeds, {len(ds.y_train)} images"):
        if reuse and s in reuse:
            out["scratch"][s], out["kd"][s] = reuse[s]
            continue
        out["scratch"][s] = distill.train_student_resnet(ds, seed=s, **student)
        loss = distill.CachedTeacher(teacher).loss_fn(temperature, alpha)
        out["kd"][s] = distill.train_student_resnet(ds, seed=s, loss_fn=loss, **student)
    return out


def student_accuracies(runs: dict[str, dict[int, dict]], kind: str) -> list[float]:
    """The test accuracy of every seed's ``kind`` (``"scratch"`` | ``"kd"``) student of
    :func:`kd_vs_scratch`, in seed order."""
    if kind not in runs:
        raise ValueError(f"kind {kind!r}: choose one of {sorted(runs)}")
    return [r["test"]["accuracy"] for r in runs[kind].values()]


def _detector_student(td, student_yaml, seed: int, out: Path, name: str, epochs: int, kd: dict | None = None) -> dict:
    """One YOLOv8 student trained by ultralytics' trainer with the teacher's recipe (``kd``: the
    :func:`common.distill.distillation_trainer` settings, or None for scratch), scored on val and
    test. Runs in this process or in a :mod:`common.workers` process (one tick per epoch)."""
    from common import distill, env, train, workers, workloads

    extra = {} if kd is None else {"trainer": distill.distillation_trainer(td.model, **kd)}
    env.seed_everything(seed)
    yolo = workloads.yolo(student_yaml)
    if hasattr(yolo, "add_callback"):
        yolo.add_callback("on_train_epoch_end", lambda trainer: workers.tick())
    hist, model = train.fit_detector(yolo, td.data, epochs=epochs,
                                     img_size=td.config.img_size, batch=td.config.batch, lr=td.config.lr,
                                     seed=seed, project=out / f"yolo-{name}-s{seed}",
                                     desc=f"student, {name}, seed {seed}", save=False, cache="ram", **extra)
    v = workloads.variant(td, distill.plain_student(model), out / f"yolo-{name}-s{seed}" / "model")
    return {"variant": v, "history": hist, "val": workloads.evaluate(v, split="val"), "quality": workloads.evaluate(v)}


def detector_students(td, student_yaml: str | Path, seeds: list[int], out: str | Path, *, epochs: int,
                      weights: list[float], box_ratio: float, temperature: float, workers: int = 1,
                      threads: int = 1) -> dict:
    """KD against scratch for YOLOv8 students built from ``student_yaml``, the imitation weight
    chosen on val: on ``seeds[0]`` a scratch student and one distilled student per weight of
    ``weights`` (class-score weight w, box-distribution weight ``box_ratio`` * w, through
    :func:`common.distill.distillation_trainer`); the weight whose student scores the highest
    val mAP50-95 (the first of a tie) is kept, and every later seed trains a scratch and a
    distilled student at that weight. Every student trains ``epochs`` with the teacher ``td``'s
    recipe and is scored on val and test.

    ``workers`` > 1 trains that many students at a time in :mod:`common.workers` processes of
    ``threads`` threads each (one progress bar over every epoch); 1 trains them here, one after
    another, each with its own bar.

    Returns {"weight": the chosen weight, "sweep": a DataFrame (weight, val mAP50-95) of
    ``seeds[0]``'s distilled students (their test scores stay unread but the kept one's), "runs": {"scratch" | "kd": {seed: {"variant",
    "history", "val", "quality"}}}} with the kept students (plain, no teacher inside)."""
    import pandas as pd
    from tqdm import tqdm

    from common import workers as pool

    pool.check_workers(workers)
    if not seeds or not weights:
        raise ValueError(f"need at least one seed and one weight, got seeds {seeds}, weights {weights}")
    out = Path(out)
    first, rest = seeds[0], list(seeds[1:])

    def job(seed: int, name: str, w: float | None = None) -> dict:
        kd = None if w is None else {"weight": w, "box_weight": box_ratio * w, "temperature": temperature}
        return {"td": td, "student_yaml": student_yaml, "seed": seed, "out": out, "name": name, "epochs": epochs, "kd": kd}

    # phase 1: seed 0's distilled students, whose validation scores choose the weight (padded with
    # scratch students, which need no choice, to fill its last round); phase 2: the rest, scratch
    # and distilled students alternating, so that the two kinds (distilled ones run the teacher
    # too, and take longer) share the rounds rather than one of them running alone at the end
    scratch = {("scratch", s, None): job(s, "scratch") for s in seeds}
    phase1 = {("kd", first, w): job(first, f"kd-w{w:g}", w) for w in weights}
    if workers == 1:   # one after another, in seed order, as a reader follows them
        phase1 = {("scratch", first, None): scratch.pop(("scratch", first, None)), **phase1}
    else:
        for key in list(scratch)[:(-len(phase1)) % workers]:
            phase1[key] = scratch.pop(key)
    total = epochs * (len(weights) + 1 + 2 * len(rest))
    bar = tqdm(total=total, desc=f"detector students ({workers} processes x {threads} thread)", unit="epoch") if workers > 1 else None
    try:
        done = pool.run(_detector_student, phase1, workers=workers, threads=threads, bar=bar)
        chosen = max(weights, key=lambda w: done["kd", first, w]["val"]["map50_95"])   # max keeps the first of a tie
        later = [(("kd", s, chosen), job(s, f"kd-w{chosen:g}", chosen)) for s in rest]
        pending = list(scratch.items())
        phase2 = {}
        while pending or later:   # alternate: a scratch student, then a distilled one
            for queue in (pending, later):
                if queue:
                    key, kwargs = queue.pop(0)
                    phase2[key] = kwargs
        done.update(pool.run(_detector_student, phase2, workers=workers, threads=threads, bar=bar))
    finally:
        if bar is not None:
            bar.close()
    runs: dict[str, dict[int, dict]] = {"scratch": {s: done["scratch", s, None] for s in seeds},
                                        "kd": {s: done["kd", s, chosen] for s in seeds}}
    sweep = pd.DataFrame([{"weight": w, "val map50_95": done["kd", first, w]["val"]["map50_95"]} for w in weights])
    return {"weight": chosen, "sweep": sweep, "runs": runs}
