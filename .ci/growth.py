"""How much longer `make homeworks` got between two commits, with the VM's drift taken out.

    python .ci/growth.py OLD_REV [NEW_REV]     # NEW_REV defaults to the working tree

Papermill records every cell's duration in the committed notebooks. This VM's speed drifts by
20-50 % between hours, so two runs' totals are not comparable as they stand. Cells whose source is
identical in both versions (and that call no timing code) did the same work: the median of their
duration ratios is the machine's speed change between the two runs. The growth is then
new total / (old total x that factor).
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("measure.", "speed.", "crosscheck.", "timing.", "benchmark")
MIN_S = 10.0


def cells(rev: str | None, path: str) -> list[tuple[str, float]]:
    text = (ROOT / path).read_text() if rev is None else subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    nb = json.loads(text)
    return [("".join(c["source"]), c.get("metadata", {}).get("papermill", {}).get("duration") or 0.0)
            for c in nb["cells"] if c["cell_type"] == "code"]


def main(argv: list[str]) -> None:
    old_rev, new_rev = argv[0], (argv[1] if len(argv) > 1 else None)
    sys.path.insert(0, str(ROOT))
    from common import run_all

    old_total = new_total = 0.0
    ratios = []
    for nb in run_all.notebooks():
        rel = str(nb.relative_to(ROOT))
        old, new = cells(old_rev, rel), cells(new_rev, rel)
        o, n = sum(d for _, d in old), sum(d for _, d in new)
        old_total, new_total = old_total + o, new_total + n
        same = {s: d for s, d in old}
        for s, d in new:
            if s in same and min(d, same[s]) >= MIN_S and not any(t in s for t in TIMING):
                ratios.append(d / same[s])
        print(f"{rel:45s} {o:7.0f} s -> {n:7.0f} s")
    if not ratios:
        raise SystemExit("no identical cell of at least 10 s in both versions: the drift cannot be taken out")
    factor = statistics.median(ratios)
    import random

    rng = random.Random(0)
    boots = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    lo, hi = boots[50], boots[1949]
    print(f"total {old_total:.0f} s -> {new_total:.0f} s: raw x{new_total / old_total:.3f}")
    print(f"machine speed: {len(ratios)} identical cells of >= {MIN_S:.0f} s took x{factor:.3f} "
          f"(range {min(ratios):.3f}-{max(ratios):.3f}) as long")
    print(f"growth with the drift taken out: x{new_total / (old_total * factor):.3f} "
          f"(95 % CI over those cells x{new_total / (old_total * hi):.3f}-x{new_total / (old_total * lo):.3f})")


if __name__ == "__main__":
    main(sys.argv[1:])
