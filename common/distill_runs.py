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


def detector_students(td, student_yaml: str | Path, seeds: list[int], out: str | Path, *, epochs: int,
                      weight: float, box_weight: float, temperature: float) -> dict[str, dict[int, dict]]:
    """A scratch and a distilled YOLOv8 student from ``student_yaml`` per seed, both trained by
    ultralytics' trainer with the teacher ``td``'s recipe for ``epochs`` (the distilled one through
    :func:`common.distill.distillation_trainer` with the imitation weights and temperature).
    Returns {"scratch" | "kd": {seed: {"variant", "history", "quality"}}}, the students plain
    (no teacher inside) and scored on test."""
    from common import distill, env, train, workloads

    out = Path(out)
    runs: dict[str, dict[int, dict]] = {"scratch": {}, "kd": {}}
    for s in seeds:
        for name in runs:
            extra = {} if name == "scratch" else {"trainer": distill.distillation_trainer(
                td.model, weight=weight, box_weight=box_weight, temperature=temperature)}
            env.seed_everything(s)
            hist, model = train.fit_detector(workloads.yolo(student_yaml), td.data, epochs=epochs,
                                             img_size=td.config.img_size, batch=td.config.batch, lr=td.config.lr,
                                             seed=s, project=out / f"yolo-{name}-s{s}",
                                             desc=f"student, {name}, seed {s}", save=False, cache="ram", **extra)
            v = workloads.variant(td, distill.plain_student(model), out / f"yolo-{name}-s{s}" / "model")
            runs[name][s] = {"variant": v, "history": hist, "quality": workloads.evaluate(v)}
    return runs
