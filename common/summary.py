"""The results READMEs: ``results/README.md`` (a summary per workload, Pareto plots, every row,
GPU tables, run times, the environment) and the generated blocks of the top-level and homework
READMEs. ``python -m common.summary`` rewrites them all from ``results/experiments.csv`` (the end
of every ``make homeworks`` does).
"""

from __future__ import annotations

from pathlib import Path

from common import env, files
from common.registry import (HOMEWORKS, LOSSLESS_DROP, PRIMARY, QUALITY, REFERENCE_NAMES, TECHNIQUE, WORKLOADS,
                             baseline_row, load)
from common.report import _fmt, _num, plot_pareto
from common.speed import decision

#: method strings longer than this are cut in the README's tables (the registry keeps them whole)
METHOD_CHARS = 60
#: the rows that show a homework's technique, where not all of them do (a regular expression over
#: the row name): hw4's unclustered int8 twin and hw6's scratch students are controls, the capstone's
#: single-step rows are its ablations (the chain is the pruned int8 OpenVINO model)
TECHNIQUE_ROWS = {"hw4": r".*(kmeans|linear|cqat).*", "hw6": r"student-kd.*", "capstone": r"pruned-int8-openvino"}


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
            row["measured against"] = _against(r).replace("itself (A/A)", "itself (A/A noise)")
            row["RAM MB"] = f"{_num(r['ram_mb']):.0f}" if _num(r["ram_mb"]) else ""
            row["GPU ms"] = f"{_num(r['latency_gpu_ms']):.2f}" if _num(r["latency_gpu_ms"]) else ""
            row["VRAM MB"] = f"{_num(r['vram_mb']):.0f}" if _num(r["vram_mb"]) else ""
            row["status"] = "" if q is not None else (r.notes.split(";")[0] or "not measured")
            rows.append(row)
        table = pd.DataFrame(rows)
        keep = [c for c in table.columns if (table[c] != "").any() or c in ("homework", "name")]
        out[workload, dataset] = table[keep]
    return out


def _against(r) -> str:
    """The row a speed-up was measured against ("itself (A/A)" for the reference), or "" if untimed."""
    if not _num(r.get("speedup")):
        return ""
    return "itself (A/A)" if r.get("speedup_vs") == r["name"] else str(r.get("speedup_vs") or "")


def _cells(r, key: str, base_q: float | None, base_mb: float | None) -> dict[str, str]:
    """The short table cells of one registry row: name, method, quality and Δ (``key``), size ×, speed-up."""
    q, mb = _num(r[key]), _num(r["size_mb"])
    return {"row": r["name"], "method": short(r.method, 48), key: f"{q:.4f}" if q is not None else "",
            f"Δ{key}": f"{q - base_q:+.4f}" if q is not None and base_q is not None else "",
            "size ×": f"{base_mb / mb:.2f}" if mb and base_mb else "",
            "speed-up × (95 % CI)": _speedup_cell(r).replace(" dense kernels: none expected", " (dense)"),
            "against": _against(r)}


def best_rows(df, workload: str, dataset: str) -> "pandas.DataFrame":
    """The summary of one workload and dataset: the baseline, then per homework the row that best
    shows its technique. Among a homework's measured rows (references and controls excluded:
    :data:`TECHNIQUE_ROWS`), those that keep
    quality (a drop of at most :data:`LOSSLESS_DROP`) compete: the highest measured speed-up whose
    interval lies above the run's A/A noise band (:func:`common.speed.decision`) wins, or where there is none the smallest file (then the sparsest); when no row keeps quality, the row
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
        return {"technique": technique, "homework": r.homework, **_cells(r, key, b, bs), "kept quality": kept}

    out = [line(base, "baseline", "")]
    for hw in HOMEWORKS[1:]:
        rows = sub[(sub.homework == hw) & sub[key].notna() & ~sub["name"].isin(REFERENCE_NAMES)]
        if hw in TECHNIQUE_ROWS:
            rows = rows[rows["name"].str.fullmatch(TECHNIQUE_ROWS[hw])]
        if not len(rows):
            continue
        drop = b - rows[key]
        kept = rows[drop <= limit + 1e-9]
        if len(kept):
            clear = kept.apply(lambda r: decision(r["speedup"], r["speedup_lo"], r["speedup_hi"],   # the course's one rule
                                                  0.0 if pd.isna(r["speedup_noise"]) else r["speedup_noise"]) == "faster", axis=1)
            timed = kept[clear]                          # a clear speed-up: its interval above the run's A/A noise
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


def environment_stamp(tool: str = "common.summary") -> str:
    """CPU model and ISA flags, cores, threads used, library versions and the date (written by
    ``python -m <tool>``), one block."""
    import datetime

    cpu = env.cpu_info()
    versions = ", ".join(f"{k} {v}" for k, v in env.versions().items())
    return (f"CPU: {cpu['cpu']} ({cpu['cores']} logical cores); ISA: {cpu['isa']}; "
            f"training and evaluation on {env.DEFAULT_THREADS} threads, every timing on the threads of its row's "
            f"`threads` column; GPU: "
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
    """A DataFrame of display strings as markdown table lines."""
    return markdown_table(table.to_dict("records"), list(table.columns))


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
BLOCK_BEGIN = "<!-- results: generated by `python -m common.summary` from results/experiments.csv; do not edit -->"
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
        out = [{**_cells(r, key, b, bs),
                "status": "" if _num(r[key]) is not None else (str(r.notes).split(";")[0] or "not measured")}
               for _, r in rows.iterrows()]
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
    out = [{"homework": "hw1", "technique": "baseline"}]   # what every Δ below is against
    for w, d in mains:
        b = baseline_row(df, w, d)
        ms, threads = (None, None) if b is None else (_num(b["latency_cpu_ms"]), _num(b["threads"]))
        out[0][f"{w} / {d}"] = "" if b is None else (
            f"{PRIMARY[w]} {_num(b[PRIMARY[w]]):.4f}, {_num(b['size_mb']):.2f} MB"
            + (f", {ms:.1f} ms per image in hw1's run (batch 1, {threads:.0f} CPU threads)" if ms and threads else ""))
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
            written.append(files.write_text(readme, new))
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
             "Generated from [`experiments.csv`](experiments.csv) by `python -m common.summary` "
             "(run at the end of `make homeworks`); do not edit by hand.", "",
             "**How to read the summaries** (one table per workload and dataset):", "",
             "- The baseline, then for each homework the row that best shows its technique (references and controls "
             "left out): of the rows that keep quality, within the course's budget for a lossless step ("
             + ", ".join(f"{v:g} {PRIMARY[w]} for {w}" for w, v in LOSSLESS_DROP.items())
             + "; a row's own budget in its notebook may be wider), the one with the highest speed-up whose interval "
             "lies above 1, else the smallest file, then the sparsest. Where no row keeps quality, the one with the "
             "least loss, marked ❌. Other rows may sit inside the chosen one's interval: the full table has them.",
             "- Δ is the quality difference to the baseline in the metric's own units; size × is baseline / row.",
             "- A speed-up is what the row's homework measured in **one interleaved run** (`common.speed`), the median "
             "of per-round ratios with its 95 % bootstrap interval, against the row named in *against* (the same "
             "PyTorch baseline file, or for the Keras twin its TFLite float32 model). Against PyTorch it includes the "
             "switch of runtime: hw2's section 10 and the capstone's ablation separate the two. \"(dense)\": a sparse "
             "model run by dense kernels, where no speed-up is expected.",
             "- Rows of different homeworks come from different runs: compare a row with its own reference, not with "
             "another homework's row. Absolute CPU ms (full tables) are snapshots of the VM. The Pareto plots put "
             "every homework's rows on one chart, each speed-up from its own run: they show which techniques reach "
             "where, not a ranking of points whose intervals overlap.", ""]
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
            fig.tight_layout()
            with files.atomic(out_dir / name) as tmp:
                fig.savefig(tmp, dpi=100, metadata={"Software": None})
            plt.close(fig)
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
    return files.write_text(out_dir / "README.md", "\n".join(lines))


if __name__ == "__main__":
    print(write_summary())
    for readme in write_blocks(load()):
        print(readme)
