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


def _detector_student(td, student_yaml, seed: int, out: Path, name: str, epochs: int, trainer=None) -> dict:
    """One YOLOv8 student trained by ultralytics' trainer with the teacher's recipe (``trainer``:
    a distillation trainer, or None for scratch), scored on val and test."""
    from common import distill, env, train, workloads

    extra = {} if trainer is None else {"trainer": trainer}
    env.seed_everything(seed)
    hist, model = train.fit_detector(workloads.yolo(student_yaml), td.data, epochs=epochs,
                                     img_size=td.config.img_size, batch=td.config.batch, lr=td.config.lr,
                                     seed=seed, project=out / f"yolo-{name}-s{seed}",
                                     desc=f"student, {name}, seed {seed}", save=False, cache="ram", **extra)
    v = workloads.variant(td, distill.plain_student(model), out / f"yolo-{name}-s{seed}" / "model")
    return {"variant": v, "history": hist, "val": workloads.evaluate(v, split="val"), "quality": workloads.evaluate(v)}


def detector_students(td, student_yaml: str | Path, seeds: list[int], out: str | Path, *, epochs: int,
                      weights: list[float], box_ratio: float, temperature: float) -> dict:
    """KD against scratch for YOLOv8 students built from ``student_yaml``, the imitation weight
    chosen on val: on ``seeds[0]`` a scratch student and one distilled student per weight of
    ``weights`` (class-score weight w, box-distribution weight ``box_ratio`` * w, through
    :func:`common.distill.distillation_trainer`); the weight whose student scores the highest
    val mAP50-95 (the first of a tie) is kept, and every later seed trains a scratch and a
    distilled student at that weight. Every student trains ``epochs`` with the teacher ``td``'s
    recipe and is scored on val and test.

    Returns {"weight": the chosen weight, "sweep": a DataFrame (weight, val mAP50-95) of
    ``seeds[0]``'s distilled students (their test scores stay unread but the kept one's), "runs": {"scratch" | "kd": {seed: {"variant",
    "history", "val", "quality"}}}} with the kept students (plain, no teacher inside)."""
    import pandas as pd

    from common import distill

    if not seeds or not weights:
        raise ValueError(f"need at least one seed and one weight, got seeds {seeds}, weights {weights}")
    out = Path(out)

    def trainer(w: float):
        return distill.distillation_trainer(td.model, weight=w, box_weight=box_ratio * w, temperature=temperature)

    first, rest = seeds[0], list(seeds[1:])
    runs: dict[str, dict[int, dict]] = {"scratch": {first: _detector_student(td, student_yaml, first, out, "scratch", epochs)},
                                        "kd": {}}
    swept = {w: _detector_student(td, student_yaml, first, out, f"kd-w{w:g}", epochs, trainer(w)) for w in weights}
    chosen = max(weights, key=lambda w: swept[w]["val"]["map50_95"])   # max keeps the first of a tie
    runs["kd"][first] = swept[chosen]
    for s in rest:
        runs["scratch"][s] = _detector_student(td, student_yaml, s, out, "scratch", epochs)
        runs["kd"][s] = _detector_student(td, student_yaml, s, out, f"kd-w{chosen:g}", epochs, trainer(chosen))
    sweep = pd.DataFrame([{"weight": w, "val map50_95": r["val"]["map50_95"]} for w, r in swept.items()])
    return {"weight": chosen, "sweep": sweep, "runs": runs}
