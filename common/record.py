"""Registry rows of a set of saved models of one workload: each measured by the same harness
(:func:`common.measure.measure`), all timed against a reference in one interleaved
:func:`common.speed.compare` run, each row built by :func:`common.registry.row`."""

from __future__ import annotations

from typing import Mapping, NamedTuple

from common import env


class Model(NamedTuple):
    """One model to record: its baseline-like ``variant`` (``path``, ``input_shape``), the torch module
    (params, GFLOPs, sparsity), its quality dict and the registry's method text."""

    variant: object
    module: object
    quality: Mapping
    method: str


def measured_rows(homework: str, bl, models: Mapping[str, Model], reference: str, *,
                  ram: set[str] | None = None, notes: Mapping[str, str] | None = None,
                  threads: int = env.DEFAULT_THREADS, rounds: int | None = None):
    """Measure ``models`` (by registry name) of ``bl``'s workload, time them against
    ``models[reference]``, and return (rows, {name: Measurement}, the speed comparison).

    Peak RAM is measured for the names in ``ram`` (all when None; the others note that they were
    not); ``notes`` adds a note to a row by name. ``rounds``: interleaved timing rounds
    (:data:`common.speed.ROUNDS` unless given, the course's count everywhere)."""
    from tqdm import tqdm

    from common import data, measure, registry, speed

    if reference not in models:
        raise ValueError(f"the reference {reference!r} is not one of the models: {', '.join(models)}")
    w, notes = bl.config.workload, dict(notes or {})
    rows, measured = [], {}
    for name, m in tqdm(models.items(), desc=f"measuring {w}"):
        with_ram = ram is None or name in ram
        got = measure.measure(m.variant.path, bl.input_shape, threads=threads, cpu=False, label=f"{w} {name}",
                              ram=with_ram)
        if not with_ram:
            got.notes.append("ram: not measured (a row of the same architecture has it)")
        measured[name] = got
        rows.append(registry.row(homework, w, data.dataset_label(bl.config.dataset), name, m.method, m.quality,
                                 measure.model_figures(m.module, bl.input_shape), got.row(), notes=notes.get(name, "")))
    timed = speed.compare(reference, {name: m.variant.path for name, m in models.items()}, bl.input_shape,
                          threads=threads, rounds=rounds, desc=f"{w} timing")
    timed.update(rows)
    return rows, measured, timed
