"""The results registry ``results/experiments.csv``: its schema, and reading and writing its rows.

Every homework writes its experiments here, one row each, upserted by
(homework, workload, dataset, name) so that a rerun replaces its rows instead of adding
duplicates. Writes are atomic (temporary file + ``os.replace``) under a file lock. The tables
and plots are :mod:`common.report`'s; the results READMEs are :mod:`common.summary`'s.
"""

from __future__ import annotations

import csv
import fcntl
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Mapping

from common import env, files

COLUMNS = ("homework", "workload", "dataset", "name", "method", "precision", "recall", "map50",
           "map50_95", "accuracy", "f1", "sparsity", "params", "gflops", "size_mb", "gzip_mb",
           "fitness", "latency_cpu_ms", "latency_cpu_p90_ms", "speedup", "speedup_lo", "speedup_hi",
           "speedup_noise", "speedup_vs", "pre_ms", "infer_ms", "post_ms", "latency_gpu_ms", "ram_mb",
           "vram_mb", "threads", "notes")
KEY = COLUMNS[:4]
HOMEWORKS = ("hw1", "hw2", "hw3", "hw4", "hw5", "hw6", "capstone")
#: the two course workloads, plus hw4's Keras twin of the classifier (TFMOT has no PyTorch side)
WORKLOADS = ("resnet18", "yolov8n", "keras_cnn")
TEXT = {"homework", "workload", "dataset", "name", "method", "speedup_vs", "notes"}
INTEGER = {"params", "threads"}
#: decimals written to the CSV, per numeric column (sizes to the byte, so that a table's rounding to
#: 10 kB is the same as a notebook's print of the measured size, never a rounding of a rounding)
DECIMALS = {"precision": 4, "recall": 4, "map50": 4, "map50_95": 4, "accuracy": 4, "f1": 4,
            "sparsity": 4, "gflops": 4, "size_mb": 6, "gzip_mb": 4, "latency_cpu_ms": 3,
            "latency_cpu_p90_ms": 3, "latency_gpu_ms": 3, "ram_mb": 1, "vram_mb": 1, "fitness": 4,
            "speedup": 3, "speedup_lo": 3, "speedup_hi": 3, "speedup_noise": 3, "pre_ms": 3,
            "infer_ms": 3, "post_ms": 3}
#: decimals shown in tables where they differ from the CSV: sizes to 10 kB, because a file's bytes
#: move by a few hundred between exports (TorchScript debug info records source paths; torch.save
#: archives carry a random serialization id that changes their gzip size)
DISPLAY_DECIMALS = {**DECIMALS, "size_mb": 2, "gzip_mb": 2}
#: columns whose values vary run to run (timings, memory); shown with a unit in tables
VARYING_UNITS = {"latency_cpu_ms": "ms", "latency_cpu_p90_ms": "ms", "latency_gpu_ms": "ms",
                 "pre_ms": "ms", "infer_ms": "ms", "post_ms": "ms",
                 "ram_mb": "MB RSS", "vram_mb": "MB VRAM"}


#: A note every row of a (workload, dataset label) carries, registered by :func:`note_dataset` when
#: the dataset is resolved (:func:`common.params.course`): a detection set exported without a test
#: split is scored on val, and each of its rows, whichever homework writes it, says so.
DATASET_NOTES: dict[tuple[str, str], str] = {}


class RegistryError(ValueError):
    """A row that does not fit the registry's schema."""


def note_dataset(workload: str, dataset: str, note: str) -> None:
    """Make :func:`upsert` start the notes of every row of ``workload`` on ``dataset`` (a registry
    label) with ``note``."""
    DATASET_NOTES[workload, dataset] = note


def _with_dataset_note(row: dict) -> dict:
    note = DATASET_NOTES.get((row.get("workload"), row.get("dataset")))
    notes = str(row.get("notes") or "")
    if note is None or notes.startswith(note):
        return row
    return {**row, "notes": f"{note}; {notes}" if notes else note}


def registry_path() -> Path:
    return env.results_dir() / "experiments.csv"


def _cell(column: str, value) -> str:
    """Validate and format one value for the CSV ('' for missing / not applicable)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return ""
    if column in TEXT:
        text = str(value).replace("\n", " ").strip()
        if column in KEY and "," in text and column != "dataset":
            raise RegistryError(f"{column} must not contain commas: {text!r}")
        return text
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RegistryError(f"column {column!r} is numeric, got {value!r}") from None
    if not math.isfinite(number):
        raise RegistryError(f"column {column!r} got a non-finite value {value!r}")
    if column in INTEGER:
        return str(int(round(number)))
    return f"{number:.{DECIMALS[column]}f}"


def row(homework: str, workload: str, dataset: str, name: str, method: str, quality: Mapping | None = None,
        *parts: Mapping, notes: str | Iterable[str] = "", **fields) -> dict:
    """One registry row: the key, the method, the schema's columns of ``quality`` (metrics dicts carry
    more), then ``parts`` (``Measurement.row()``, ``measure.model_figures``...) and ``fields`` in that
    order, later ones winning; ``notes`` joined with "; ", empty ones dropped. Checked by :func:`normalize`."""
    out = {"homework": homework, "workload": workload, "dataset": dataset, "name": name, "method": method,
           **{c: v for c, v in (quality or {}).items() if c in COLUMNS}}
    for part in parts:
        out.update(part)
    out.update(fields)
    texts = [notes] if isinstance(notes, str) else list(notes)
    joined = "; ".join(t for t in (*texts, out.get("notes") or "") if t)
    if joined:
        out["notes"] = joined
    else:
        out.pop("notes", None)
    normalize(out)
    return out


def normalize(row: dict) -> dict[str, str]:
    """A row checked against the schema and formatted as it will be written."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise RegistryError(f"unknown columns {sorted(unknown)}; valid columns: {', '.join(COLUMNS)}")
    missing = [k for k in KEY if not str(row.get(k) or "").strip()]
    if missing:
        raise RegistryError(f"row lacks the key columns {missing} (key: {', '.join(KEY)})")
    if row["homework"] not in HOMEWORKS:
        raise RegistryError(f"unknown homework {row['homework']!r}; valid: {', '.join(HOMEWORKS)}")
    if row["workload"] not in WORKLOADS:
        raise RegistryError(f"unknown workload {row['workload']!r}; valid: {', '.join(WORKLOADS)}")
    out = {c: _cell(c, row.get(c)) for c in COLUMNS}
    for col in ("precision", "recall", "map50", "map50_95", "accuracy", "f1", "sparsity"):
        if out[col] and not 0.0 <= float(out[col]) <= 1.0:
            raise RegistryError(f"{col} must lie in [0, 1], got {row[col]!r}")
    return out


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_rows(path: Path | None = None) -> list[dict[str, str]]:
    path = path or registry_path()
    if not path.exists():
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        found = tuple(reader.fieldnames or ())
        if found != COLUMNS:
            # a registry written before columns were added: every column it has is known, in order
            if not (set(KEY) <= set(found) and list(found) == [c for c in COLUMNS if c in found]):
                raise RegistryError(f"{path} has columns {reader.fieldnames}, expected {list(COLUMNS)}")
            return [{c: r.get(c, "") for c in COLUMNS} for r in reader]
        return list(reader)


def upsert(rows: dict | Iterable[dict], path: Path | None = None, *, drop_stale: bool = False) -> Path:
    """Insert or replace rows by (homework, workload, dataset, name); atomic, all or nothing.

    Every row is validated before anything is written. Existing rows keep their position;
    new rows are appended in the order given. ``drop_stale``: the given rows are a complete run,
    so every existing row of the same (homework, workload, dataset) is removed first (including
    rows an earlier run with other parameters left behind) and the given rows are appended in
    their order, the same order a fresh registry gets. A row of a dataset with a registered note
    (:func:`note_dataset`) gets that note first in its notes.
    """
    rows = [rows] if isinstance(rows, dict) else list(rows)
    new = [normalize(_with_dataset_note(r)) for r in rows]  # raises before any write
    keys = [tuple(r[k] for k in KEY) for r in new]
    if len(set(keys)) != len(keys):
        raise RegistryError("the same (homework, workload, dataset, name) appears twice in one upsert")
    path = path or registry_path()
    with _locked(path):
        current = read_rows(path)
        if drop_stale:
            scopes = {k[:3] for k in keys}
            current = [r for r in current if tuple(r[k] for k in KEY[:3]) not in scopes]
        index = {tuple(r[k] for k in KEY): i for i, r in enumerate(current)}
        for key, row in zip(keys, new):
            if key in index:
                current[index[key]] = row
            else:
                index[key] = len(current)
                current.append(row)
        with files.atomic(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(current)
    _log_to_mlflow(new)
    return path


def _log_to_mlflow(rows: list[dict[str, str]]) -> None:
    """When ``MLFLOW_TRACKING_URI`` is set, log each upserted row as an MLflow run."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return
    import mlflow

    mlflow.set_experiment("nn-compression")
    for row in rows:
        with mlflow.start_run(run_name="/".join(row[k] for k in KEY)):
            mlflow.log_params({k: row[k] for k in ("homework", "workload", "dataset", "name",
                                                   "method", "threads") if row[k]})
            metrics = {k: float(v) for k, v in row.items() if k not in TEXT and k != "threads" and v}
            mlflow.log_metrics(metrics)
            if row["notes"]:
                mlflow.set_tag("notes", row["notes"])


def load(path: Path | None = None, **filters) -> "pandas.DataFrame":
    """The registry as a DataFrame (numbers as floats), optionally filtered by column values."""
    import pandas as pd

    path = path or registry_path()
    if not path.exists():
        return pd.DataFrame(columns=list(COLUMNS))
    df = pd.read_csv(path, dtype={c: str for c in TEXT}, keep_default_na=False,
                     na_values={c: [""] for c in COLUMNS if c not in TEXT})
    for col, value in filters.items():
        if col not in COLUMNS:
            raise RegistryError(f"cannot filter on {col!r}; columns: {', '.join(COLUMNS)}")
        df = df[df[col] == value]
    return df.reset_index(drop=True)


def load_run(homework: str, baselines: Mapping, path: Path | None = None) -> "pandas.DataFrame":
    """The registry's rows of ``homework`` on this run's data only: each workload of ``baselines``
    (workload -> :class:`common.workloads.Baseline`) with its baseline's dataset. Rows that earlier
    runs wrote on other data stay in the registry (and in ``results/README.md``), not in this table."""
    from common import data

    df = load(path, homework=homework)
    keys = {(w, data.dataset_label(bl.config.dataset)) for w, bl in baselines.items()}
    return df[[k in keys for k in zip(df["workload"], df["dataset"])]].reset_index(drop=True)


# --------------------------------------------------------------------------- what the rows mean

#: quality columns shown per workload, and the one deltas and Pareto fronts use
QUALITY = {"resnet18": ("accuracy", "f1"), "yolov8n": ("precision", "recall", "map50", "map50_95"),
           "keras_cnn": ("accuracy", "f1")}
PRIMARY = {"resnet18": "accuracy", "yolov8n": "map50_95", "keras_cnn": "accuracy"}
#: the largest drop of PRIMARY a lossless-by-design step may cost (the course's budget, used by
#: :mod:`common.budgets`): 1 point of accuracy, 0.02 mAP50-95
LOSSLESS_DROP = {"resnet18": 0.01, "keras_cnn": 0.01, "yolov8n": 0.02}
#: row names that are the uncompressed reference of their homework (the A/A row), not a technique
REFERENCE_NAMES = ("baseline", "baseline-fp32", "fp32 pytorch", "teacher", "pytorch")
#: what each homework's rows show, in the summary at the top of ``results/README.md``
TECHNIQUE = {"hw1": "baseline", "hw2": "quantization", "hw3": "pruning", "hw4": "clustering",
             "hw5": "export", "hw6": "distillation", "capstone": "pruning + int8"}


def baseline_row(df, workload: str, dataset: str):
    """The baseline row of a workload and dataset: hw1's, or for a workload hw1 does not train
    (hw4's Keras twin) the row named ``baseline`` of the homework that does; None when missing."""
    rows = df[(df.workload == workload) & (df.dataset == dataset) & (df.name == "baseline")]
    rows = rows.sort_values("homework", key=lambda h: h != "hw1", kind="stable")
    return rows.iloc[0] if len(rows) else None
