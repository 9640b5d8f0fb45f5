"""Method comparisons over several seeds: mean ± spread, and a winner only where the
difference is larger than the spread.

A single run per method crowns a winner by chance as often as not: a model trained on another
seed (or on another CPU, whose rounding acts like another seed) moves its test accuracy by a
few images. Every comparison a notebook concludes from is measured over ``SEEDS`` and goes
through :func:`verdict`, which calls a difference real only when the seed ranges do not overlap
(every seed of one method beats every seed of the other; with three seeds each, chance alone
does that 1 time in 10). Where both methods ran on the same seeds, :func:`paired_verdict` compares
seed by seed instead, naming a winner only when it wins on every seed (every difference has one sign).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence


class SeedError(ValueError):
    """Too few seeds, or seeds given twice."""


def check_seeds(seeds: Sequence[int], minimum: int = 3) -> list[int]:
    """``seeds`` as a list of distinct ints, at least ``minimum`` of them; raises otherwise."""
    seeds = list(seeds)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise SeedError(f"seeds must be integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise SeedError(f"seeds must be distinct, got {seeds!r}")
    if len(seeds) < minimum:
        raise SeedError(f"a comparison needs at least {minimum} seeds to show a spread, got {len(seeds)}: {seeds!r}")
    return seeds


@dataclass(frozen=True)
class Summary:
    """One method's results over seeds."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)

    @property
    def std(self) -> float:
        n = len(self.values)
        return (sum((v - self.mean) ** 2 for v in self.values) / (n - 1)) ** 0.5 if n > 1 else 0.0

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f} (range {self.lo:.4f}–{self.hi:.4f}, n={len(self.values)})"


def summarize(values: Iterable[float]) -> Summary:
    values = tuple(float(v) for v in values)
    if not values:
        raise SeedError("no values to summarize")
    return Summary(values)


@dataclass(frozen=True)
class Verdict:
    """``a`` vs ``b``: the difference of means, the spread it has to exceed, and the winner
    (None when the seed ranges overlap). ``paired``: ``a`` and ``b`` hold the same seeds in the
    same order, and the per-seed differences decide (see :func:`paired_verdict`)."""

    name_a: str
    name_b: str
    a: Summary
    b: Summary
    paired: bool = False

    @property
    def diff(self) -> float:
        return self.a.mean - self.b.mean

    @property
    def differences(self) -> tuple[float, ...]:
        """Per-seed ``a - b`` (meaningful for a paired verdict only)."""
        return tuple(x - y for x, y in zip(self.a.values, self.b.values))

    @property
    def spread(self) -> float:
        """The larger of the two seed ranges (max - min); paired: the range of the differences."""
        if self.paired:
            d = self.differences
            return max(d) - min(d)
        return max(self.a.hi - self.a.lo, self.b.hi - self.b.lo)

    @property
    def winner(self) -> str | None:
        if self.paired:
            d = self.differences
            if all(v > 0 for v in d):
                return self.name_a
            if all(v < 0 for v in d):
                return self.name_b
            return None
        if self.a.lo > self.b.hi:
            return self.name_a
        if self.b.lo > self.a.hi:
            return self.name_b
        return None

    def __str__(self) -> str:
        head = f"{self.name_a} {self.a.mean:.4f} vs {self.name_b} {self.b.mean:.4f}: {self.diff:+.4f}"
        if self.paired:
            if self.winner:
                return f"{head}, {self.winner} better on every paired seed (range of the differences {self.spread:.4f})"
            return f"{head}, within the paired differences' range ({self.spread:.4f}): no winner"
        if self.winner:
            return f"{head}, {self.winner} better on every seed (its worst seed beats the other's best; seed ranges up to {self.spread:.4f})"
        return f"{head}, within the seed spread ({self.spread:.4f}): no winner"

    def sentence(self, scale: float = 1.0, fmt: str = "+.4f", unit: str = "") -> str:
        """The difference in bold and what it means, for a conclusion: a winner only outside the
        spread. ``scale`` and ``unit`` turn accuracy into points (100, " pt")."""
        d = format(self.diff * scale, fmt) + unit
        spread = format(self.spread * scale, fmt.lstrip("+")) + unit
        n = len(self.a.values)
        if self.paired:
            if self.winner:
                return f"**{d}**: {self.winner} is better on every one of the {n} paired seeds (range of the differences {spread})"
            return f"**{d}**, the paired differences change sign (range {spread}): no winner on this evidence"
        if self.winner:
            return f"**{d}**: {self.winner} is better on every one of the {n} seeds (seed spread {spread})"
        return f"**{d}**, within the seed spread ({spread}): no winner on this evidence"


def verdict(name_a: str, a: Iterable[float], name_b: str, b: Iterable[float]) -> Verdict:
    """Compare two methods' per-seed results (higher is better)."""
    sa, sb = summarize(a), summarize(b)
    if len(sa.values) < 2 or len(sb.values) < 2:
        raise SeedError("each method needs at least 2 seeds for a spread")
    return Verdict(name_a, name_b, sa, sb)


def paired_verdict(name_a: str, a: Iterable[float], name_b: str, b: Iterable[float]) -> Verdict:
    """Compare two methods run on the same seeds, given in the same order (higher is better):
    a winner only when it beats the other on every seed."""
    sa, sb = summarize(a), summarize(b)
    if len(sa.values) != len(sb.values):
        raise SeedError(f"a paired comparison needs one result per seed for both methods, in the same "
                        f"seed order; got {len(sa.values)} for {name_a} and {len(sb.values)} for {name_b}")
    if len(sa.values) < 2:
        raise SeedError(f"a paired comparison needs at least 2 seeds, got {len(sa.values)}")
    return Verdict(name_a, name_b, sa, sb, paired=True)


def plot(ax, groups: dict[str, Sequence[float]], ylabel: str, title: str = "", reference: float | None = None,
         reference_label: str = "baseline"):
    """Each method's seeds as dots, the mean as a short horizontal line and the range as a vertical
    one: a dot plot, not bars, because the y axis is zoomed to the data and a bar's height would then
    mislead. ``reference`` (e.g. the baseline's quality) is a dashed line in the legend."""
    for i, (name, vals) in enumerate(groups.items()):
        s = summarize(vals)
        ax.hlines(s.mean, i - 0.25, i + 0.25, color=f"C{i}", lw=2.5, label="mean of the seeds" if i == 0 else None)
        ax.plot([i, i], [s.lo, s.hi], color=f"C{i}", lw=1.5)
        ax.scatter([i] * len(vals), vals, color=f"C{i}", zorder=3, s=18, label="one seed" if i == 0 else None)
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1, label=reference_label)
    ax.legend(fontsize=7)
    lo = min(min(v) for v in groups.values())
    hi = max(max(v) for v in groups.values())
    pad = max(0.01, 0.25 * (hi - lo))
    top = max(hi, reference if reference is not None else hi)
    ax.set_ylim(lo - pad, top + pad)
    ax.set_xticks(range(len(groups)), list(groups), rotation=20, fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, axis="y")
    return ax
