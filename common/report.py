"""The results registry ``results/experiments.csv``, its tables, and the shared plots.

Every homework writes its experiments here, one row each, upserted by
(homework, workload, dataset, name) so that a rerun replaces its rows instead of adding
duplicates. Writes are atomic (temporary file + ``os.replace``) under a file lock.
"""

from __future__ import annotations

import csv
import fcntl
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Mapping

from common import env

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
#: decimals written to the CSV, per numeric column
DECIMALS = {"precision": 4, "recall": 4, "map50": 4, "map50_95": 4, "accuracy": 4, "f1": 4,
            "sparsity": 4, "gflops": 4, "size_mb": 4, "gzip_mb": 4, "latency_cpu_ms": 3,
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
        fd, tmp = tempfile.mkstemp(prefix=".experiments-", suffix=".csv", dir=path.parent)
        try:
            with os.fdopen(fd, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
                writer.writeheader()
                writer.writerows(current)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
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


def _fmt(column: str, value) -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column in TEXT:
        return str(value)
    if column in INTEGER:
        return f"{int(value):,}" if column == "params" else str(int(value))
    text = f"{float(value):.{DISPLAY_DECIMALS[column]}f}"
    return f"{text} {VARYING_UNITS[column]}" if column in VARYING_UNITS else text


def table(df, columns: Iterable[str] | None = None, drop_empty: bool = True):
    """A display-ready copy of registry rows: numbers at fixed precision, the run-to-run
    varying measurements (latency, RAM) carrying their unit; empty columns dropped."""
    import pandas as pd

    columns = list(columns or COLUMNS)
    out = pd.DataFrame({c: [_fmt(c, v) for v in df[c]] for c in columns})
    if drop_empty:
        out = out.loc[:, [c for c in out.columns if (out[c] != "").any()]]
    return out


def show(df, columns: Iterable[str] | None = None):
    """Render registry rows as an HTML table (deterministic markup, no random ids)."""
    from IPython.display import HTML

    html = table(df, columns).to_html(index=False, border=0, classes="nnc-results")
    style = ("<style>.nnc-results td,.nnc-results th{padding:2px 8px;text-align:right}"
             ".nnc-results td:nth-child(-n+5){text-align:left}</style>")
    return HTML(style + html)


def markdown(df, columns: Iterable[str] | None = None) -> str:
    """Registry rows as a GitHub-markdown table."""
    t = table(df, columns)
    lines = ["| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in t.itertuples(index=False)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots

def plot_confusion(cm, classes, ax=None, title: str = "confusion matrix"):
    """Confusion matrix heat map with counts (rows: true class, columns: predicted)."""
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.asarray(cm)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    plt.colorbar(im, ax=ax, fraction=0.046)
    return ax


def plot_images(x, labels, classes, mean, std, n: int = 16, title: str = "samples"):
    """A grid of (de-normalised) images from a classification split with their labels."""
    import matplotlib.pyplot as plt
    import numpy as np

    n = min(n, len(x))
    ncols = min(8, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.6 * nrows), squeeze=False)
    m, s = np.asarray(mean)[:, None, None], np.asarray(std)[:, None, None]
    for ax, img, lab in zip(axes.flat, x[:n], labels[:n]):
        ax.imshow(np.clip(np.asarray(img) * s + m, 0, 1).transpose(1, 2, 0))
        ax.set_title(classes[int(lab)], fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_detections(images, predictions, truths, class_names, ncols: int = 4,
                    title: str = "predictions (solid) vs ground truth (dashed)",
                    titles: list[str] | None = None):
    """Draw predicted boxes (solid, with class and confidence) and ground-truth boxes (dashed)
    on images. ``predictions[i]``: array N x 6 (x1, y1, x2, y2, conf, cls); ``truths[i]``:
    array M x 5 (cls, x1, y1, x2, y2), pixels (None: no ground truth); ``titles``: one per image."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    n = len(images)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 3 * nrows), squeeze=False)
    colours = plt.get_cmap("tab10")
    truths = [np.zeros((0, 5)) if t is None else t for t in truths]
    for i, (ax, img, pred, truth) in enumerate(zip(axes.flat, images, predictions, truths)):
        ax.imshow(img)
        if titles:
            ax.set_title(titles[i], fontsize=8)
        for c, x1, y1, x2, y2 in truth:
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ls="--", lw=1,
                                   ec=colours(int(c) % 10)))
        for x1, y1, x2, y2, conf, c in pred:
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.5,
                                   ec=colours(int(c) % 10)))
            ax.text(x1, y1 - 1, f"{class_names[int(c)]} {conf:.2f}", fontsize=6, color="white",
                    bbox=dict(fc=colours(int(c) % 10), ec="none", pad=0.5))
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_photos(fig, quality: int = 85):
    """Show a figure of photos as a JPEG (a PNG of photos is several times larger than the 200 KB a
    committed output may take) and close it; returns the bytes' length."""
    import io

    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    buf = io.BytesIO()
    fig.savefig(buf, format="jpeg", dpi=80, bbox_inches="tight", pil_kwargs={"quality": quality, "optimize": True})
    plt.close(fig)
    display(Image(data=buf.getvalue(), format="jpeg"))
    return buf.tell()


# --------------------------------------------------------------------------- course summary

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
#: method strings longer than this are cut in the README's tables (the registry keeps them whole)
METHOD_CHARS = 60


def short(text: str, limit: int = METHOD_CHARS) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with "…" when cut."""
    text = str(text)
    if len(text) <= limit:
        return text
    cut = text[:limit - 1].rsplit(" ", 1)[0].rstrip(",;:(")
    return cut + "…"


def _homework_order(df):
    """``df`` sorted by homework in course order (hw1 … hw6, capstone), registry order within one."""
    rank = {h: i for i, h in enumerate(HOMEWORKS)}
    return df.sort_values("homework", key=lambda h: h.map(rank), kind="stable")


def baseline_row(df, workload: str, dataset: str):
    """The baseline row of a workload and dataset: hw1's, or for a workload hw1 does not train
    (hw4's Keras twin) the row named ``baseline`` of the homework that does; None when missing."""
    rows = df[(df.workload == workload) & (df.dataset == dataset) & (df.name == "baseline")]
    rows = rows.sort_values("homework", key=lambda h: h != "hw1", kind="stable")
    return rows.iloc[0] if len(rows) else None


def _num(x):
    return x if isinstance(x, (int, float)) and not (isinstance(x, float) and math.isnan(x)) else None


def _speedup_cell(r) -> str:
    """A row's speed-up with its interval, from its own interleaved run (common.speed); rows on dense
    kernels say that no speed-up is expected."""
    sp, lo, hi = _num(r.get("speedup")), _num(r.get("speedup_lo")), _num(r.get("speedup_hi"))
    if sp is None or lo is None or hi is None:
        return ""
    cell = f"{sp:.2f} ({lo:.2f}-{hi:.2f})"
    return cell + (" dense kernels: none expected" if "no speed-up expected" in str(r.get("notes") or "") else "")


def comparison(df=None) -> dict[tuple[str, str], "pandas.DataFrame"]:
    """The seeds' comparison table, per (workload, dataset): baseline first, then every other
    experiment with Δquality (accuracy or mAP50-95, in points of the metric), size ratio against
    the hw1 baseline, and the speed-up each row's homework measured against its reference in one
    interleaved run (never a ratio of latencies from different runs). Rows without a quality
    number (skipped) keep their notes instead."""
    import pandas as pd

    df = load() if df is None else df
    out = {}
    for (workload, dataset), group in df.groupby(["workload", "dataset"], sort=False):
        base = baseline_row(df, workload, dataset)
        key = PRIMARY[workload]
        rows = []
        is_base = group.name == "baseline"
        if base is not None:
            is_base = is_base & (group.homework == base.homework)
        ordered = pd.concat([group[is_base], _homework_order(group[~is_base])])
        for _, r in ordered.iterrows():
            q, b = _num(r[key]), (_num(base[key]) if base is not None else None)
            s, bs = _num(r["size_mb"]), (_num(base["size_mb"]) if base is not None else None)
            t = _num(r["latency_cpu_ms"])
            row = {"homework": r.homework, "name": r["name"], "method": short(r.method)}
            for c in QUALITY[workload]:
                row[c] = _fmt(c, r[c])
            row[f"Δ{key}"] = f"{q - b:+.4f}" if q is not None and b is not None else ""
            row["fitness"] = _fmt("fitness", r.get("fitness"))
            e2e = [_num(r.get(c)) for c in ("pre_ms", "infer_ms", "post_ms")]
            row["ultralytics pre / inference / NMS ms"] = (" / ".join(f"{v:.2f}" for v in e2e)
                                                            if all(v is not None for v in e2e) else "")
            row["sparsity"] = _fmt("sparsity", r["sparsity"])
            row["params"] = _fmt("params", r["params"])
            row["GFLOPs"] = _fmt("gflops", r["gflops"])
            row["size MB"] = _fmt("size_mb", r["size_mb"])
            row["size ×"] = f"{bs / s:.2f}" if s and bs else ""
            row["gzip MB"] = _fmt("gzip_mb", r["gzip_mb"])
            row["CPU ms (snapshot)"] = f"{t:.2f}" if t else ""
            row["speed-up × (95 % CI)"] = _speedup_cell(r)
            row["measured against"] = "" if not _num(r.get("speedup")) else (
                "itself (A/A noise)" if r.get("speedup_vs") == r["name"] else str(r.get("speedup_vs") or ""))
            row["RAM MB"] = f"{_num(r['ram_mb']):.0f}" if _num(r["ram_mb"]) else ""
            row["GPU ms"] = f"{_num(r['latency_gpu_ms']):.2f}" if _num(r["latency_gpu_ms"]) else ""
            row["VRAM MB"] = f"{_num(r['vram_mb']):.0f}" if _num(r["vram_mb"]) else ""
            row["status"] = "" if q is not None else (r.notes.split(";")[0] or "not measured")
            rows.append(row)
        table = pd.DataFrame(rows)
        keep = [c for c in table.columns if (table[c] != "").any() or c in ("homework", "name")]
        out[workload, dataset] = table[keep]
    return out


def best_rows(df, workload: str, dataset: str) -> "pandas.DataFrame":
    """The summary of one workload and dataset: the baseline, then per homework the row that best
    shows its technique. Among a homework's measured rows (references excluded), those that keep
    quality (a drop of at most :data:`LOSSLESS_DROP`) compete: the highest measured speed-up whose
    interval lies above 1 wins, or where there is none the smallest file (then the sparsest); when no row keeps quality, the row
    with the least loss is shown and says so. Columns: technique, homework, row, method, quality,
    Δquality, size ×, speed-up with its interval, kept quality."""
    import pandas as pd

    key = PRIMARY[workload]
    sub = df[(df.workload == workload) & (df.dataset == dataset)]
    base = baseline_row(df, workload, dataset)
    if base is None or _num(base[key]) is None:
        return pd.DataFrame()
    b, bs, limit = float(base[key]), _num(base["size_mb"]), LOSSLESS_DROP[workload]

    def line(r, technique: str, kept: str) -> dict:
        q, s = float(r[key]), _num(r["size_mb"])
        return {"technique": technique, "homework": r.homework, "row": r["name"], "method": short(r.method, 48),
                key: f"{q:.4f}", f"Δ{key}": f"{q - b:+.4f}", "size ×": f"{bs / s:.2f}" if s and bs else "",
                "speed-up × (95 % CI)": _speedup_cell(r).replace(" dense kernels: none expected", " (dense)"),
                "against": "" if not _num(r.get("speedup")) else (
                    "itself (A/A)" if r.get("speedup_vs") == r["name"] else str(r.get("speedup_vs") or "")),
                "kept quality": kept}

    out = [line(base, "baseline", "")]
    for hw in HOMEWORKS[1:]:
        rows = sub[(sub.homework == hw) & sub[key].notna() & ~sub["name"].isin(REFERENCE_NAMES)]
        if not len(rows):
            continue
        drop = b - rows[key]
        kept = rows[drop <= limit + 1e-9]
        if len(kept):
            timed = kept[kept["speedup_lo"] > 1]         # a clear speed-up: its interval above 1
            if len(timed):
                pick = timed.loc[timed["speedup"].idxmax()]
            else:        # the smallest file (to 10 kB), then the sparsest, then the best quality
                order = kept.assign(_mb=kept["size_mb"].round(2), _sp=-kept["sparsity"].fillna(0), _q=-kept[key])
                pick = kept.loc[order.sort_values(["_mb", "_sp", "_q"], kind="stable", na_position="last").index[0]]
            verdict = f"✅ within {limit:g}"
        else:
            pick = rows.loc[rows[key].idxmax()]
            verdict = f"❌ every row loses more than {limit:g}"
        out.append(line(pick, TECHNIQUE[hw], verdict))
    table = pd.DataFrame(out)
    return table[[c for c in table.columns if (table[c] != "").any() or c in ("technique", "row")]]


def pareto_front(x, y) -> list[int]:
    """Indices of the points no other point beats: lower-or-equal ``x`` and higher-or-equal
    ``y``, strictly better in one. Sorted by ``x``."""
    pts = sorted(range(len(x)), key=lambda i: (x[i], -y[i]))
    front, best = [], -math.inf
    for i in pts:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return front


#: axis labels of the Pareto plots, with units
PARETO_X = {"speedup": "speed-up × over the PyTorch baseline, batch 1, each row's own run (log scale)",
            "latency_cpu_ms": "CPU latency, batch 1 (ms, log scale)", "size_mb": "size on disk (MB, log scale)"}
METRIC_LABEL = {"accuracy": "accuracy (fraction of test images)", "map50_95": "mAP50-95 (0-1)"}


def plot_pareto(df, workload: str, dataset: str, x: str = "speedup", ax=None):
    """Quality vs ``x`` (the measured speed-up, or size) for every measured experiment of a
    workload, coloured by homework, the Pareto front drawn and its points numbered. Speed-ups
    come from each homework's interleaved run against the same baseline file (PyTorch eager).
    Returns ``(ax, front)``: ``front`` lists "homework name" per number, for a key beside the plot."""
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    key = PRIMARY[workload]
    sub = df[(df.workload == workload) & (df.dataset == dataset)].copy()
    sub = sub[sub[key].notna() & sub[x].notna()]
    base = baseline_row(df, workload, dataset)
    is_base = (sub.homework == base.homework) & (sub["name"] == base["name"]) if base is not None else False
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    colours = dict(zip(HOMEWORKS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for hw, g in sub[~is_base].groupby("homework"):
        ax.scatter(g[x], g[key], s=18, alpha=0.7, color=colours.get(hw), label=f"{hw}: {TECHNIQUE[hw]}")
    xs, ys = sub[x].tolist(), sub[key].tolist()
    front = pareto_front([-v for v in xs] if x == "speedup" else xs, ys)   # a higher speed-up is better
    front = sorted(front, key=lambda i: xs[i])
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "k-", lw=1, label="Pareto front (numbered)")
    labels = []
    for n, i in enumerate(front, 1):
        r = sub.iloc[i]
        labels.append(f"{r.homework} {r['name']}")
        ax.annotate(str(n), (xs[i], ys[i]), fontsize=8, xytext=(3, 4 if n % 2 else -10),
                    textcoords="offset points")
    if base is not None and _num(base[x]):
        ax.scatter([base[x]], [base[key]], marker="*", s=160, color="black", zorder=5, label=f"{base.homework} baseline")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.margins(x=0.08)
    label = {"speedup": "speed-up", "latency_cpu_ms": "CPU latency", "size_mb": "size on disk"}.get(x, x)
    ax.set(xlabel=PARETO_X.get(x, x), ylabel=METRIC_LABEL.get(key, key),
           title=f"{workload} / {dataset}: {key} vs {label}, every experiment")
    ax.legend(fontsize=7, loc="best")
    return ax, labels


def environment_stamp(tool: str = "common.report") -> str:
    """CPU model and ISA flags, cores, threads used, library versions and the date (written by
    ``python -m <tool>``), one block."""
    import datetime

    cpu = env.cpu_info()
    versions = ", ".join(f"{k} {v}" for k, v in env.versions().items())
    return (f"CPU: {cpu['cpu']} ({cpu['cores']} logical cores); ISA: {cpu['isa']}; "
            f"threads per run: {env.DEFAULT_THREADS} unless a row says otherwise; GPU: "
            f"{env.gpu_name() or 'none'}.\n\nVersions: {versions}.\n\n"
            f"Generated {datetime.date.today().isoformat()} by `python -m {tool}`.")


#: ``make gpu``'s tables (:mod:`common.gpu` writes them, :func:`gpu_section` renders them)
GPU_COLUMNS = ("workload", "dataset", "runtime", "precision", "batch", "latency_gpu_ms", "latency_gpu_p90_ms",
               "throughput_ips", "vram_mb", "parity", "notes")
GPU_TRAIN_COLUMNS = ("workload", "dataset", "device", "seconds_per_epoch", "threads", "quality", "notes")


def markdown_table(rows: list[dict], columns) -> list[str]:
    """``rows`` as markdown table lines over ``columns`` (floats to 4 significant digits)."""
    def cell(v):
        if v is None or v == "":
            return ""
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return (["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows])


def gpu_section(gpu_dir: Path) -> list[str]:
    """The GPU tables of ``make gpu`` (``results/gpu/``, :mod:`common.gpu`) as README lines, with
    their own environment stamp; or a line saying there are none yet."""
    import pandas as pd

    lines = ["## GPU", ""]
    if not (gpu_dir / "gpu.csv").exists():
        return lines + ["No GPU table yet: `make gpu` (`python -m common.gpu`) writes `results/gpu/` on a "
                        "machine with an NVIDIA GPU. Every GPU column above is empty for the same reason: the "
                        "notebooks ran on a CPU-only machine, and no CPU figure stands in for a GPU one.", ""]

    def rows(name):
        return pd.read_csv(gpu_dir / name, keep_default_na=False).to_dict("records")

    return lines + [f"Made by `make gpu` on its own machine ([gpu/](gpu/README.md)), apart from the CPU rows "
                    "above.", "", "### Training time per epoch", "", *markdown_table(rows("training.csv"), GPU_TRAIN_COLUMNS),
                    "", "### Inference", "", *markdown_table(rows("gpu.csv"), GPU_COLUMNS), "",
                    (gpu_dir / "environment.md").read_text().strip(), ""]


def _md(table) -> list[str]:
    return (["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
            + ["| " + " | ".join(str(v) for v in r) + " |" for r in table.itertuples(index=False)])


def _sections(df) -> list[tuple[str, str, bool]]:
    """(workload, dataset, main) in reading order: each workload's main dataset (the one most of
    its homeworks ran on) in :data:`WORKLOADS` order, then the runs on other data."""
    pairs = list(dict.fromkeys(zip(df["workload"], df["dataset"])))
    spread = {p: df[(df.workload == p[0]) & (df.dataset == p[1])].homework.nunique() for p in pairs}
    main = {w: max((p for p in pairs if p[0] == w), key=lambda p: spread[p]) for w, _ in pairs}
    rank = {w: i for i, w in enumerate(WORKLOADS)}
    out = [(w, d, main[w] == (w, d)) for w, d in pairs]
    return sorted(out, key=lambda t: (not t[2], rank.get(t[0], len(rank))))


#: the markers around the generated results block of a homework's README
BLOCK_BEGIN = "<!-- results: generated by `python -m common.report` from results/experiments.csv; do not edit -->"
BLOCK_END = "<!-- end of results -->"


def homework_summary(df, homework: str) -> list[str]:
    """Markdown lines for a homework's README: per workload, on its main dataset, every row of
    ``homework`` with its quality, Δquality, size × and the speed-up its run measured (95 % CI)."""
    import pandas as pd

    lines = []
    for workload, dataset, main in _sections(df):
        rows = df[(df.workload == workload) & (df.dataset == dataset) & (df.homework == homework)]
        if not main or not len(rows):
            continue
        key, base = PRIMARY[workload], baseline_row(df, workload, dataset)
        b = _num(base[key]) if base is not None else None
        bs = _num(base["size_mb"]) if base is not None else None
        out = []
        for _, r in rows.iterrows():
            q, sz = _num(r[key]), _num(r["size_mb"])
            out.append({"row": r["name"], "method": short(r.method, 48), key: f"{q:.4f}" if q is not None else "",
                        f"Δ{key}": f"{q - b:+.4f}" if q is not None and b is not None else "",
                        "size ×": f"{bs / sz:.2f}" if sz and bs else "",
                        "speed-up × (95 % CI)": _speedup_cell(r).replace(" dense kernels: none expected", " (dense)"),
                        "against": "" if not _num(r.get("speedup")) else (
                            "itself (A/A)" if r.get("speedup_vs") == r["name"] else str(r.get("speedup_vs") or "")),
                        "status": "" if q is not None else (str(r.notes).split(";")[0] or "not measured")})
        table = pd.DataFrame(out)
        table = table[[c for c in table.columns if (table[c] != "").any() or c == "row"]]
        lines += [f"**{workload} / {dataset}**", "", *_md(table), ""]
    return lines


def headlines(df) -> list[str]:
    """Markdown lines for the top-level README: per homework, for each workload on its main
    dataset, the row :func:`best_rows` picks (quality change, size ×, speed-up with its interval)."""
    import pandas as pd

    mains = [(w, d) for w, d, main in _sections(df) if main and w in ("resnet18", "yolov8n")]
    picks = {(w, d): best_rows(df, w, d) for w, d in mains}
    out = []
    for hw in HOMEWORKS[1:]:
        row = {"homework": hw, "technique": TECHNIQUE[hw]}
        for w, d in mains:
            t = picks[w, d]
            hit = t[t.homework == hw] if len(t) else t
            if not len(hit):
                row[f"{w} / {d}"] = ""
                continue
            r = hit.iloc[0]
            key = f"Δ{PRIMARY[w]}"
            bits = [f"{r['row']}: {key} {r[key]}"]
            if r.get("size ×") and r["size ×"] != "1.00":
                bits.append(f"{r['size ×']}× smaller")
            sp = str(r.get("speed-up × (95 % CI)") or "")
            if sp:
                value, _, rest = sp.partition(" ")
                bits.append(f"speed-up {value}× {rest.replace(' (dense)', '')}"
                            + (" on dense kernels" if "(dense)" in rest else ""))
            row[f"{w} / {d}"] = ", ".join(bits) + ("" if str(r["kept quality"]).startswith("✅") else " (❌ quality)")
        out.append(row)
    return _md(pd.DataFrame(out)) + [""]


def write_blocks(df, root: Path | None = None) -> list[Path]:
    """Rewrite the generated results block (between :data:`BLOCK_BEGIN` and :data:`BLOCK_END`) of
    the top-level README (:func:`headlines`) and of every homework README (:func:`homework_summary`)
    that has one, atomically; returns the READMEs written."""
    root = Path(root or env.REPO_ROOT)
    written = []
    for readme in [root / "README.md", *sorted(root.glob("hw*_*/README.md"))]:
        text = readme.read_text() if readme.exists() else ""
        if BLOCK_BEGIN not in text or BLOCK_END not in text:
            continue
        head, rest = text.split(BLOCK_BEGIN, 1)
        _, tail = rest.split(BLOCK_END, 1)
        body = (headlines(df) if readme.parent == root else homework_summary(df, readme.parent.name.split("_")[0])
                ) or ["No rows in the registry yet.", ""]
        new = head + BLOCK_BEGIN + "\n\n" + "\n".join(body) + "\n" + BLOCK_END + tail
        if new != text:
            tmp = readme.with_name(".README.md.tmp")
            tmp.write_text(new)
            os.replace(tmp, readme)
            written.append(readme)
    return written


def run_times(root: Path | None = None) -> dict[str, float]:
    """Seconds each committed notebook took in the run that produced its outputs (papermill's
    record in the notebook's metadata), by notebook name; notebooks without one are left out."""
    import json

    root = Path(root or env.REPO_ROOT)
    out = {}
    for nb in sorted(root.glob("hw*_*/hw*_*.ipynb")) + sorted(root.glob("results/*.ipynb")):
        seconds = json.loads(nb.read_text()).get("metadata", {}).get("papermill", {}).get("duration")
        if seconds:
            out[nb.stem] = float(seconds)
    return out


def write_summary(out_dir: Path | None = None, df=None) -> Path:
    """Write ``results/README.md`` and the Pareto plots beside it: per workload and dataset a
    summary (:func:`best_rows`), the plots with the key to their numbered points, and every row
    (:func:`comparison`) in a collapsed section; then the GPU tables and the environment stamp.
    Atomic per file; returns the README path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir or env.results_dir())
    df = load(out_dir / "experiments.csv") if df is None else df
    tables = comparison(df)
    lines = ["# Results", "",
             "Generated from [`experiments.csv`](experiments.csv) by `python -m common.report` "
             "(run at the end of `make homeworks`); do not edit by hand.", "",
             "**How to read the summaries.** One table per workload and dataset: the baseline, then for each "
             "homework the row that best shows its technique. Among the rows that keep quality (a drop of at most "
             + ", ".join(f"{v:g} {PRIMARY[w]} for {w}" for w, v in LOSSLESS_DROP.items())
             + ") the one with the highest measured speed-up whose interval lies above 1 is shown (other rows may "
             "be inside its interval: the full table has them), or, where a homework has no such speed-up, the "
             "smallest file (then the sparsest); where no row keeps quality, the row with the least loss, marked ❌. "
             "Δ is the quality difference to the baseline in the metric's own units; size × is baseline / row "
             "(above 1 is smaller). A speed-up is what the row's homework measured in **one interleaved run** "
             "(`common.speed`: rounds of the reference and each candidate, each runtime in its own worker process), "
             "the median of per-round ratios with its 95 % bootstrap interval, against the row named in *against* "
             "(the same PyTorch baseline file, or for the Keras twin its TFLite float32 model). \"(dense)\" marks a "
             "sparse model run by dense kernels, where no speed-up is expected. Absolute CPU ms, in the full tables, "
             "are snapshots of the VM at the time of each run and are not compared across rows.", ""]
    for workload, dataset, main in _sections(df):
        table = tables[workload, dataset]
        sub = df[(df.workload == workload) & (df.dataset == dataset)]
        homeworks = [h for h in HOMEWORKS if h in set(sub.homework)]
        lines += [f"## {workload} / {dataset}" + ("" if main else " (other data)"), "",
                  f"Rows of {', '.join(homeworks)}" + ("." if main else ": a run of those notebooks with "
                  "another dataset parameter, kept in the registry; `make homeworks` does not re-run it."), ""]
        summary = best_rows(df, workload, dataset)
        if len(summary):
            lines += _md(summary) + [""]
        for x in ("speedup", "size_mb"):
            if not sub[x].notna().any():
                continue
            fig, ax = plt.subplots(figsize=(8, 5))
            _, front = plot_pareto(df, workload, dataset, x, ax=ax)
            name = f"pareto_{workload}_{Path(dataset).name}_{x.split('_')[0]}.png"
            tmp = out_dir / f".{name}.tmp.png"
            fig.tight_layout()
            fig.savefig(tmp, dpi=100, metadata={"Software": None})
            plt.close(fig)
            os.replace(tmp, out_dir / name)
            lines += [f"![{workload} / {dataset}: {PRIMARY[workload]} against {x}]({name})", "",
                      "Pareto front: " + "; ".join(f"{n}. {t}" for n, t in enumerate(front, 1)) + ".", ""]
        lines += ["<details><summary>Every row ({} rows)</summary>".format(len(table)), "", *_md(table), "",
                  "</details>", ""]
    lines += gpu_section(out_dir / "gpu")
    times = run_times(out_dir.parent)
    if times:
        lines += ["## Run times", "", "Wall time of each committed notebook in the run that produced its outputs "
                  "(papermill's record in the notebook): " + ", ".join(f"{k} {v:,.0f} s" for k, v in times.items())
                  + f"; {sum(times.values()):,.0f} s in all. Notebooks can be re-run alone, so these may come from "
                  "different runs; the machine's speed drifts between runs.", ""]
    lines += ["## Environment", "", environment_stamp(), ""]
    path = out_dir / "README.md"
    tmp = out_dir / ".README.md.tmp"
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)
    return path


if __name__ == "__main__":
    print(write_summary())
    for readme in write_blocks(load()):
        print(readme)
