"""Tables and plots of registry rows, the same in every notebook.

The registry itself (schema, :func:`upsert`, :func:`load`, :func:`load_run`) lives in
:mod:`common.registry` and is re-exported here, so that a notebook needs one module for its rows,
its tables and its plots; the results READMEs are :mod:`common.summary`'s.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

from common import env
from common.registry import (COLUMNS, DATASET_NOTES, DECIMALS, DISPLAY_DECIMALS, HOMEWORKS, INTEGER, KEY,  # noqa: F401
                             LOSSLESS_DROP, PRIMARY, QUALITY, REFERENCE_NAMES, TECHNIQUE, TEXT, VARYING_UNITS,
                             WORKLOADS, RegistryError, baseline_row, load, load_run, normalize, note_dataset,
                             read_rows, registry_path, row, upsert)


def _num(x):
    return x if isinstance(x, (int, float)) and not (isinstance(x, float) and math.isnan(x)) else None


def signed(x: float, digits: int = 4) -> str:
    """``x`` with its sign to ``digits`` decimals; a value that rounds to zero prints +0.0000, never -0.0000."""
    return f"{round(x, digits) + 0.0:+.{digits}f}"


def drop(baseline: float, value: float, pt: bool = False) -> str:
    """A quality drop in words, always as a drop (never a signed change whose sign a reader must
    decode): "2.80 pt below the baseline", "none (0.10 pt above the baseline)" or "none";
    ``pt``: in percentage points (accuracy), else in the metric's own units to 4 decimals."""
    d = round((baseline - value) * (100 if pt else 1), 2 if pt else 4)
    text = f"{abs(d):.{2 if pt else 4}f}{' pt' if pt else ''}"
    return f"{text} below the baseline" if d > 0 else f"none ({text} above the baseline)" if d < 0 else "none"


def first_drop(levels: Sequence[float], values: Sequence[float], baseline: float, tol: float) -> float | None:
    """The knee of a sweep: the first of ``levels`` (in the order given) whose value lies more than
    ``tol`` below ``baseline``, or None when every level stays within it."""
    if len(levels) != len(values):
        raise ValueError(f"{len(levels)} levels but {len(values)} values")
    return next((lv for lv, v in zip(levels, values) if v < baseline - tol), None)


def first_within(levels: Sequence[float], values: Sequence[float], baseline: float, tol: float) -> float | None:
    """The cheapest setting that holds: the first of ``levels`` (in the order given, cheapest
    first, e.g. fewest calibration images or clusters) whose value lies within ``tol`` of
    ``baseline`` (above it counts as within), or None when none does. The knee of a sweep whose
    quality rises with the level, the counterpart of :func:`first_drop`."""
    if len(levels) != len(values):
        raise ValueError(f"{len(levels)} levels but {len(values)} values")
    return next((lv for lv, v in zip(levels, values) if v >= baseline - tol), None)


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
    """Render registry rows as an HTML table (deterministic markup, no random ids, no whitespace
    between tags: the same table in about two thirds of the characters)."""
    import re

    from IPython.display import HTML

    html = re.sub(r">\s+<", "><", table(df, columns).to_html(index=False, border=0, classes="nnc-results"))
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
        _, ax = plt.subplots(figsize=(5.5, 5))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", rotation_mode="anchor")
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


# --------------------------------------------------------------------------- Pareto plots

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


def _tick_limits(lo: float, hi: float, subs: Sequence[float]) -> tuple[float, float] | None:
    """The nearest ticks (``subs`` per decade) at or beyond ``lo`` and ``hi``, or None for limits
    a log axis cannot take."""
    if not 0 < lo < hi:
        return None
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 2) for m in subs]
    return max(t for t in ticks if t <= lo * (1 + 1e-9)), min(t for t in ticks if t >= hi * (1 - 1e-9))


def log_x(ax) -> None:
    """A log x axis with plain-number ticks at 1, 2 and 5 per decade. Call it after plotting: the
    limits widen to the nearest such tick on each side, so every point lies between labelled
    ticks (points at 5.2 and 11.7 MB get 5, 10 and 20, not a lone 10)."""
    from matplotlib import ticker

    ax.set_xscale("log")
    lims = _tick_limits(*ax.get_xlim(), (1.0, 2.0, 5.0))
    if lims:
        ax.set_xlim(*lims)
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


#: the labelled ticks of :func:`log_y`, per decade
LOG_SUBS = (1.0, 1.5, 2.0, 3.0, 5.0)


def log_y(ax) -> None:
    """A log y axis with plain-number ticks at 1, 1.5, 2, 3 and 5 per decade, so that data inside one
    decade (speed-ups of 1.2x-3x, say) still falls between labelled ticks. Call it after plotting:
    the limits widen to the nearest such tick on each side, so no point lies beyond the last label."""
    from matplotlib import ticker

    ax.set_yscale("log")
    lims = _tick_limits(*ax.get_ylim(), LOG_SUBS)
    if lims:
        ax.set_ylim(*lims)
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=LOG_SUBS))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def plot_pareto(df, workload: str, dataset: str, x: str = "speedup", ax=None):
    """Quality vs ``x`` (the measured speed-up, or size) for every measured experiment of a
    workload, coloured by homework, the Pareto front drawn and its points numbered. Speed-ups
    come from each homework's interleaved run against the same baseline file (PyTorch eager).
    Returns ``(ax, front)``: ``front`` lists "homework name" per number, for a key beside the plot."""
    import matplotlib.pyplot as plt

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
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "k-", lw=1,
            label="Pareto front (numbered)" if len(front) > 1 else "Pareto front: one point (numbered)")
    labels = []
    for n, i in enumerate(front, 1):
        r = sub.iloc[i]
        labels.append(f"{r.homework} {r['name']}")
        ax.annotate(str(n), (xs[i], ys[i]), fontsize=8, xytext=(3, 4 if n % 2 else -10),
                    textcoords="offset points")
    if base is not None and _num(base[x]):
        ax.scatter([base[x]], [base[key]], marker="*", s=160, color="black", zorder=5, label=f"{base.homework} baseline")
    log_x(ax)
    ax.margins(x=0.08)
    label = {"speedup": "speed-up", "latency_cpu_ms": "CPU latency", "size_mb": "size on disk"}.get(x, x)
    xlabel = PARETO_X.get(x, x)
    if workload == "keras_cnn":   # the Keras twin's speed-ups are against its own TFLite float32 model
        xlabel = xlabel.replace("the PyTorch baseline", "the twin's TFLite float32")
    ax.set(xlabel=xlabel, ylabel=METRIC_LABEL.get(key, key),
           title=f"{workload} / {dataset}: {key} vs {label}, every experiment")
    ax.legend(fontsize=7, loc="best")
    return ax, labels


def plot_quality_size(points: dict[str, tuple[float, float]], metric: str, ax=None, *,
                      labelled: Iterable[str] = (), over_seeds: dict[str, list[float]] | None = None,
                      seed: int = 0, title: str = "") -> list[str]:
    """Quality against file size (MB, log axis with ticks inside the data) of a teacher and its
    students: ``points`` name -> (size, quality of seed ``seed``). A name in ``over_seeds`` is drawn
    at its mean over seeds with the range as a bar; names in ``labelled`` are labelled, the others
    faded (``all-images`` ones as diamonds). Colours: teacher black, scratch red, distilled blue.
    Returns the labels drawn."""
    import matplotlib.pyplot as plt

    over_seeds, labelled = over_seeds or {}, set(labelled)
    missing = (set(over_seeds) | labelled) - set(points)
    if missing:
        raise KeyError(f"no point for {sorted(missing)}; points has {sorted(points)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    drawn = []
    for name, (mb, q) in points.items():
        colour = "k" if name == "teacher" else "tab:red" if "scratch" in name else "tab:blue"
        if name in over_seeds:
            vals = over_seeds[name]
            q = sum(vals) / len(vals)
            ax.errorbar(mb, q, yerr=[[q - min(vals)], [max(vals) - q]], fmt="o", color=colour, capsize=3)
            label = f"{name}: mean, range of {len(vals)} seeds"
        elif name in labelled:
            ax.scatter(mb, q, marker="s" if name == "teacher" else "o", color=colour)
            label = name if name == "teacher" else f"{name}, seed {seed}"
        else:
            ax.scatter(mb, q, marker="D" if "all-images" in name else "o", color=colour, alpha=0.3)
            continue
        ax.annotate(label, (mb, q), textcoords="offset points", xytext=(6, -3), fontsize=8)
        drawn.append(label)
    log_x(ax)
    ax.set(xlabel="model file size, MB (log scale)", ylabel=METRIC_LABEL.get(metric, metric), title=title)
    ax.grid(alpha=0.3)
    return drawn


def _label_groups(points: list[tuple[float, float]], log: bool, near: float = 0.04,
                  char: float = 0.0, tall: float = 0.0) -> list[list[int]]:
    """Indices of ``points`` (x, y) grouped so that one label can name each group: a point joins a
    group when it lies within ``near`` of the plot's width and height of any point of it (x in log
    when ``log``); then groups whose labels would overlap merge, a label being :func:`_numbers`'s
    text drawn right of its group's rightmost point, ``char`` of the width per character and
    ``tall`` of the height (0: labels are not measured)."""
    xs = [math.log10(x) if log else x for x, _ in points]
    ys = [y for _, y in points]
    wx, wy = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    fx, fy = [(x - min(xs)) / wx for x in xs], [(y - min(ys)) / wy for y in ys]
    groups: list[list[int]] = [[i] for i in range(len(points))]

    def merge(close) -> None:
        changed = True
        while changed:
            changed = False
            for a in range(len(groups)):
                for b in range(a + 1, len(groups)):
                    if close(groups[a], groups[b]):
                        groups[a] = sorted(groups[a] + groups.pop(b))
                        changed = True
                        break
                if changed:
                    break

    merge(lambda g, h: any(abs(fx[i] - fx[j]) < near and abs(fy[i] - fy[j]) < near for i in g for j in h))
    if char > 0:
        def box(g):   # (left, right, bottom, top) of a group's label, in fractions of the plot
            i = max(g, key=lambda k: fx[k])
            return fx[i] + char, fx[i] + char * (1 + len(_numbers(g))), fy[i], fy[i] + tall

        def overlap(g, h):
            (l1, r1, b1, t1), (l2, r2, b2, t2) = box(g), box(h)
            return l1 < r2 and l2 < r1 and b1 < t2 and b2 < t1
        merge(overlap)
    return sorted(groups)


def _numbers(group: list[int]) -> str:
    """Point numbers (1-based) of a label: runs of three or more as a range, "1,2,5-9"."""
    nums, out, k = [i + 1 for i in sorted(group)], [], 0
    while k < len(nums):
        j = k
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out += [f"{nums[k]}-{nums[j]}"] if j - k >= 2 else [str(n) for n in nums[k:j + 1]]
        k = j + 1
    return ",".join(out)


def plot_speed_quality(comparison, quality, metric: str, ax=None, title: str = "",
                       colors: Mapping[str, str] | None = None):
    """Quality against the speed-up of every model of one :class:`common.speed.Comparison`
    (``quality``: name -> value of ``metric``), each with its 95 % interval as a bar; points are
    numbered fastest first, a model that shares its rank with the point above it (:meth:`~common.speed.
    Comparison.groups`: no measurable difference, paired), or shows none from the reference, says so
    in the key ("3 b (= 2)"), points whose labels would
    overlap share one label ("5-11"), and the returned key ("1 name", ...) goes in the legend.
    ``colors`` (name -> colour) marks kinds of model; the reference is a black star, its quality
    the dashed line, 1x the thin vertical one."""
    import matplotlib.pyplot as plt

    names = list(comparison.speeds)
    missing = set(names) - set(quality)
    if missing:
        raise KeyError(f"no quality for {sorted(missing)}; give one per timed model")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    colors = dict(colors or {})
    ref_name = comparison.reference
    groups = comparison.groups() if len(names) > 1 else []
    order = [n for g in groups for n in g]
    order.insert(sum(comparison[n].speedup > comparison[ref_name].speedup for n in order), ref_name)
    above = {b: a for g in groups for a, b in zip(g, g[1:])}   # the neighbour a model shares its rank with
    xs = [v for n in names for v in (comparison[n].lo, comparison[n].hi)]
    log = max(xs) / min(xs) > 10     # decades: log, ticks inside the data
    key, handles = [], []
    for k, n in enumerate(order, 1):
        s = comparison[n]
        ref = n == ref_name
        color = "black" if ref else colors.get(n, "tab:blue")
        ax.errorbar(s.speedup, quality[n], xerr=[[s.speedup - s.lo], [s.hi - s.speedup]],
                    fmt="*" if ref else "o", ms=10 if ref else 5, capsize=2, color=color)
        like = above.get(n) or (None if ref or comparison.decision(n) != "same" else ref_name)
        shared = f" (= {order.index(like) + 1})" if like else ""
        key.append(f"{k} {n}" + (" (reference: its A/A ratio)" if ref else shared))
        handles.append(plt.Line2D([], [], ls="none", marker="*" if ref else "o", color=color, ms=5))
    fig = ax.get_figure()
    width_in = ax.get_position().width * fig.get_figwidth()
    height_in = ax.get_position().height * fig.get_figheight()
    points = [(comparison[n].speedup, quality[n]) for n in order]
    for g in _label_groups(points, log, char=0.065 / width_in, tall=0.13 / height_in):
        at = max(g, key=lambda i: points[i][0])
        ax.annotate(_numbers(g), points[at], fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.axhline(quality[comparison.reference], color="k", ls="--", lw=0.8)
    ax.axvline(1, color="k", lw=0.5)
    if log:
        log_x(ax)
    ax.set(xlabel=f"speed-up × over {comparison.reference}, batch {comparison[comparison.reference].batch} (95 % CI)",
           ylabel=METRIC_LABEL.get(metric, metric), title=title)
    ax.grid(alpha=0.3)
    ax.legend(handles, key, fontsize=7, loc="best", title="fastest first; (= k): no measurable difference from point k",
              title_fontsize=7)
    return key
