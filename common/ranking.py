"""Which runtime is fastest where: throughput rankings per (device, batch), and where they change.

hw5 measures every format at batch 1 and at a larger batch on the CPU (and on CUDA when the
notebook runs on a GPU); ``make gpu`` (:mod:`common.gpu`) measures the CUDA runtimes on its own
machine. :func:`table` puts them side by side (:class:`Table`), :meth:`Table.ranks` orders each
column, and :meth:`Table.changes` says in words where batching or the device changes the
fastest runtime, and whether the lead is larger than the timing spread of the two runtimes
(p90 over median) and than :data:`MIN_LEAD`: a smaller lead is reported as a tie, not a new winner.
Where a column was timed in one interleaved run (:mod:`common.speed`), its paired verdict decides
the tie instead (``ties``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

#: A lead below this fraction is a tie whatever the run's own spread: the same hw5 cell, run three
#: times in one session on the 2-core VM, gave ResNet-18's ONNX Runtime 113, 138 and 130 images/s at
#: batch 1 (and each of tflite, onnx, openvino first at least once), drift that p90 / median within one
#: run does not see.
MIN_LEAD = 0.10
#: ``make gpu``'s fp32 runtimes under hw5's format names, so one runtime is one row of the table
GPU_AS_FORMAT = {"pytorch": "pytorch", "torchscript": "torchscript", "onnxruntime": "onnx"}


def row(runtime: str, device: str, stats) -> dict:
    """A ranking row from a :class:`common.timing.LatencyStats` (its batch, median and p90)."""
    return {"runtime": runtime, "device": device, "batch": stats.batch,
            "median_ms": stats.median_ms, "p90_ms": stats.p90_ms}


def paired_ms(comparison, name: str) -> float:
    """``name``'s time per call in one interleaved run (a :class:`common.speed.Comparison`) as its
    paired speed-up puts it: the reference's median over the speed-up."""
    return comparison[comparison.reference].median_ms / comparison[name].speedup


def paired_throughput(comparison, name: str) -> float:
    """``name``'s images/s in one interleaved run from its paired speed-up (:func:`paired_ms`)."""
    return comparison[name].batch * 1000.0 / paired_ms(comparison, name)


def paired_row(runtime: str, device: str, comparison, name: str) -> dict:
    """A ranking row for ``name`` of one interleaved run (a :class:`common.speed.Comparison`): its
    time is the reference's median divided by ``name``'s paired speed-up, so that the images/s of two
    runtimes of that run stand in the ratio of their paired speed-ups (each model's own median can
    differ from that by the run's drift); p90 keeps the model's own p90 / median."""
    s = comparison[name]
    ms = paired_ms(comparison, name)
    return {"runtime": runtime, "device": device, "batch": s.batch, "median_ms": ms,
            "p90_ms": ms * s.p90_ms / s.median_ms}


@dataclass
class Table:
    """Throughput in images/s (batch x 1000 / median ms) and the relative timing spread
    (p90 / median - 1): one row per runtime (first-seen order), one column per (device, batch);
    NaN where a runtime was not measured."""

    throughput: Any    # pandas.DataFrame
    spread: Any        # pandas.DataFrame, same shape
    #: per column, a paired verdict ``tied(a, b)`` from one interleaved run (:meth:`common.speed.
    #: Comparison.tied`); it replaces the spread rule there
    ties: Mapping[tuple, Callable[[str, str], bool]] | None = None

    def _tie(self, column, a: str, b: str) -> bool:
        """Whether ``a`` and ``b`` tie in ``column``: the paired verdict where the column has one
        (``ties``), else a lead within the larger of their timing spreads or :data:`MIN_LEAD`."""
        if self.ties and column in self.ties:
            return bool(self.ties[column](a, b))
        tp = self.throughput[column]
        limit = max(MIN_LEAD, self.spread.loc[[a, b], column].max())
        return bool(max(tp[a], tp[b]) / min(tp[a], tp[b]) - 1 <= limit)

    def groups(self, column, among=None) -> list[list[str]]:
        """The runtimes measured in ``column`` (or ``among``), most images/s first, in groups that
        share a rank: a runtime joins the group of the one just above it when those two neighbours
        tie (:meth:`_tie`), as :meth:`common.speed.Comparison.groups` does."""
        col = self.throughput[column].dropna() if among is None else self.throughput.loc[among, column]
        out: list[list[str]] = []
        for n in col.sort_values(ascending=False).index:
            if out and self._tie(column, out[-1][-1], n):
                out[-1].append(n)
            else:
                out.append([n])
        return out

    def order(self, column, among=None) -> str:
        """:meth:`groups` in words: "openvino = tflite > onnx > pytorch"."""
        return " > ".join(" = ".join(g) for g in self.groups(column, among))

    def ranks(self) -> "pd.DataFrame":
        """Rank of every runtime in each column (1 = most images/s); runtimes of one :meth:`groups`
        group share the rank of its first; the next group's rank counts the runtimes above it."""
        import pandas as pd

        out = pd.DataFrame(pd.NA, index=self.throughput.index, columns=self.throughput.columns, dtype="Int64")
        for col in self.throughput.columns:
            rank = 1
            for g in self.groups(col):
                out.loc[g, col] = rank
                rank += len(g)
        return out

    def view(self) -> "pd.DataFrame":
        """The table to show: "images/s (#rank)" per cell ("#2=" where the rank is shared), empty
        where nothing was measured."""
        tp, rk = self.throughput, self.ranks()
        out = tp.astype(object).copy()
        for col in tp.columns:
            shared = rk[col].value_counts()
            out[col] = ["" if t != t else f"{t:.0f} (#{r}{'=' * int(shared[r] > 1)})" for t, r in zip(tp[col], rk[col])]
        return out

    def _fastest(self, column, among) -> tuple[str, str, bool]:
        """The fastest and the runner-up of ``column`` among ``among``, and whether they tie (:meth:`_tie`)."""
        col = self.throughput.loc[among, column].sort_values(ascending=False)
        first, second = col.index[0], col.index[1]
        return first, second, self._tie(column, first, second)

    def _pairs(self) -> list[tuple]:
        """(left, right) columns to compare: each device's smallest vs largest batch, then each
        batch measured on two devices."""
        columns = list(self.throughput.columns)
        devices = list(dict.fromkeys(d for d, _ in columns))
        batches = {d: sorted(b for e, b in columns if e == d) for d in devices}
        pairs = [((d, b[0]), (d, b[-1])) for d, b in batches.items() if len(b) > 1]
        for i, a in enumerate(devices):
            for b in devices[i + 1:]:
                pairs += [((a, n), (b, n)) for n in sorted(set(batches[a]) & set(batches[b]))]
        return pairs

    def changes(self) -> list[str]:
        """Sentences on where the fastest runtime changes, one per :meth:`_pairs` pair, over the
        runtimes measured in both columns; a lead no larger than the timing spread (or
        :data:`MIN_LEAD`) is a tie."""
        tab, out = self.throughput, []

        def name(col):
            return f"{col[0]} batch {col[1]}"

        def describe(col, f, s, tie):
            return (f"{f} {'ties with' if tie else 'leads'} {s} at {name(col)} "
                    f"({tab.loc[f, col]:.0f} vs {tab.loc[s, col]:.0f} images/s)")

        for left, right in self._pairs():
            among = list(tab.index[tab[left].notna() & tab[right].notna()])
            if len(among) < 2:
                continue
            (f1, s1, tie1), (f2, s2, tie2) = self._fastest(left, among), self._fastest(right, among)
            close = tie1 or tie2           # a lead within the timing spread in either column
            if f1 == f2:
                verdict = ("the same leader" if not close else "no clear leader in either column" if tie1 and tie2
                           else f"the same first place, a clear lead only at {name(right if tie1 else left)}")
            else:
                verdict = "no clear change (a lead within the timing spread)" if close else "the leader changes"
            order = {c: self.order(c, among) for c in (left, right)}
            out.append(f"{name(left)} vs {name(right)}: {verdict}: {describe(left, f1, s1, tie1)}; "
                       f"{describe(right, f2, s2, tie2)}. Order: {order[left]} | {order[right]}.")
        return out


def table(rows: list[dict], ties: Mapping[tuple, Callable[[str, str], bool]] | None = None) -> Table:
    """A :class:`Table` from rows with runtime, device, batch, median_ms and p90_ms (:func:`row`);
    ``ties`` gives paired tie verdicts for columns timed in one interleaved run."""
    import pandas as pd

    if not rows:
        raise ValueError("no measurements to rank")
    missing = {"runtime", "device", "batch", "median_ms", "p90_ms"} - set(rows[0])
    if missing:
        raise ValueError(f"ranking rows need {sorted(missing)} too")
    df = pd.DataFrame(rows)
    if (df["median_ms"] <= 0).any() or (df["p90_ms"] < df["median_ms"]).any():
        raise ValueError("every row needs 0 < median_ms <= p90_ms")
    df["throughput"] = df["batch"] * 1000.0 / df["median_ms"]
    df["spread"] = df["p90_ms"] / df["median_ms"] - 1
    order = list(dict.fromkeys(df["runtime"]))
    columns = pd.MultiIndex.from_tuples(list(dict.fromkeys(zip(df["device"], df["batch"]))), names=["device", "batch"])

    def pivot(values):
        return df.pivot_table(index="runtime", columns=["device", "batch"], values=values).reindex(
            index=order, columns=columns)

    return Table(pivot("throughput"), pivot("spread"), dict(ties or {}))


def gpu_rows(workload: str, path: str | Path | None = None) -> list[dict]:
    """The measured rows of ``make gpu``'s table (``results/gpu/gpu.csv``) for ``workload`` as
    ranking rows, device "cuda (make gpu)" (another machine than the notebook's); fp32 PyTorch,
    TorchScript and ONNX Runtime under hw5's format names, the rest as "runtime precision".
    Empty when there is no such table; skipped rows (no latency) are left out."""
    import pandas as pd

    from common import env

    path = Path(path) if path is not None else env.results_dir() / "gpu" / "gpu.csv"
    if not path.exists():
        return []
    df = pd.read_csv(path)
    df = df[(df["workload"] == workload) & df["latency_gpu_ms"].notna()]
    return [{"runtime": GPU_AS_FORMAT.get(r.runtime) if r.precision == "fp32" and r.runtime in GPU_AS_FORMAT
             else f"{r.runtime} {r.precision}", "device": "cuda (make gpu)", "batch": int(r.batch),
             "median_ms": float(r.latency_gpu_ms), "p90_ms": float(r.latency_gpu_p90_ms)}
            for r in df.itertuples()]
