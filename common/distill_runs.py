"""Distillation experiments on a trained teacher: the runs hw6 repeats over seeds
(:mod:`common.distill` holds the losses, the students and the trainer)."""

from __future__ import annotations

from pathlib import Path


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
