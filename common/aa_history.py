"""The harness's A/A ratios across committed runs: is the noise band centred, or biased by order?

Each round of :func:`common.speed.compare` times the reference twice, first and last; the A/A
ratio (first block / closing block, median over rounds, with its 95 % interval) is printed in
every notebook that times. About one interval in twenty should exclude 1 by chance. A bias of the
block order (the first block following a different model than the closing one) would instead
lean the same way run after run. This reads every distinct committed version of the notebooks
from git and counts the signs::

    python -m common.aa_history            # all notebooks, the last 40 commits that touched them
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from common import env

#: "A/A 0.95, 95 % CI 0.92-0.99" as every timed reference prints it
PATTERN = re.compile(r"A/A (\d+\.\d+), 95 % CI (\d+\.\d+)-(\d+\.\d+)")


@dataclass(frozen=True)
class AA:
    """One A/A ratio of one run: median and its 95 % interval."""

    notebook: str
    commit: str
    median: float
    lo: float
    hi: float

    @property
    def excludes_one(self) -> bool:
        return self.lo > 1 or self.hi < 1


def parse(text: str, notebook: str = "", commit: str = "") -> list[AA]:
    """The distinct A/A ratios printed in ``text`` (a notebook prints each twice: verdict and table)."""
    seen = dict.fromkeys(PATTERN.findall(text))
    return [AA(notebook, commit, float(m), float(lo), float(hi)) for m, lo, hi in seen]


def _git(*args: str, root: Path) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def history(root: Path = env.REPO_ROOT, commits: int = 40) -> list[AA]:
    """Every A/A ratio of every distinct committed version (git blob) of the course notebooks,
    over the last ``commits`` commits that touched them."""
    notebooks = sorted(str(p.relative_to(root)) for p in [*root.glob("hw*/hw*.ipynb"), root / "results" / "capstone.ipynb"]
                       if p.exists())
    out, blobs = [], set()
    for nb in notebooks:
        for commit in _git("log", f"-n{commits}", "--format=%h", "--", nb, root=root).split():
            try:
                blob = _git("rev-parse", f"{commit}:{nb}", root=root).strip()
            except subprocess.CalledProcessError:   # the notebook did not exist (or moved) at that commit
                continue
            if blob in blobs:
                continue
            blobs.add(blob)
            out += parse(_git("cat-file", "-p", blob, root=root), nb, commit)
    return out


def sign_test(below: int, above: int) -> float:
    """Two-sided exact binomial p-value of ``below`` vs ``above`` under no bias (ties left out)."""
    n, k = below + above, min(below, above)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def summary(values: list[AA]) -> str:
    """How many ratios, how many lean each way, how many intervals exclude 1, and the sign test."""
    below = sum(v.median < 1 for v in values)
    above = sum(v.median > 1 for v in values)
    excl = [v for v in values if v.excludes_one]
    return (f"{len(values)} A/A ratios from distinct committed runs: {below} below 1, {above} above, "
            f"{len(values) - below - above} at 1.00; median of medians "
            f"{sorted(v.median for v in values)[len(values) // 2]:.2f}; intervals excluding 1: {len(excl)} "
            f"({', '.join(f'{v.notebook.split(chr(47))[-1]} {v.median:.2f} ({v.lo:.2f}-{v.hi:.2f})' for v in excl) or 'none'}); "
            f"sign test (no order bias) p = {sign_test(below, above):.2f}") if values else "no A/A ratio found"


if __name__ == "__main__":
    print(summary(history(commits=int(sys.argv[1]) if len(sys.argv) > 1 else 40)))
