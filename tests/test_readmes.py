"""The READMEs carry no figure the committed run does not show.

Figures of the committed run live in blocks that ``python -m common.summary`` generates from
``results/experiments.csv`` (every ``make homeworks`` rewrites them); a block that no longer
matches the registry fails here. Outside the blocks, every decimal figure a README states must
appear in what the committed run shows: its notebook (sources and outputs), the registry or
``results/README.md``.
"""

import json
import re
from pathlib import Path

import pytest

from common import report, summary
from common.env import REPO_ROOT

HOMEWORK_READMES = sorted(REPO_ROOT.glob("hw*_*/README.md"))
#: a decimal figure: 0.9917, 3.93, 42.71 (not part of a version, a path or a longer number)
FIGURE = re.compile(r"(?<![\w.\-/])\d+\.\d+(?![\w.]*[/\w])")


def _block(text: str) -> str:
    assert summary.BLOCK_BEGIN in text and summary.BLOCK_END in text, "no generated results block"
    return text.split(summary.BLOCK_BEGIN, 1)[1].split(summary.BLOCK_END, 1)[0]


def _outside_blocks(text: str) -> str:
    while summary.BLOCK_BEGIN in text:
        head, rest = text.split(summary.BLOCK_BEGIN, 1)
        text = head + rest.split(summary.BLOCK_END, 1)[1]
    return text


def _shown(notebooks) -> str:
    """Everything the committed run shows: the notebooks' sources and text outputs, the registry
    and the results README."""
    parts = [(REPO_ROOT / "results" / "experiments.csv").read_text(), (REPO_ROOT / "results" / "README.md").read_text()]
    for nb in notebooks:
        for cell in json.loads(nb.read_text())["cells"]:
            parts.append("".join(cell["source"]))
            for out in cell.get("outputs", []):
                parts.append("".join(out.get("text", "")))
                parts += ["".join(v) for k, v in out.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(parts)


@pytest.mark.parametrize("readme", [REPO_ROOT / "README.md", *HOMEWORK_READMES],
                         ids=lambda p: p.parent.name if p.parent != REPO_ROOT else "README")
def test_a_readmes_generated_block_matches_the_registry(readme):
    df = report.load(REPO_ROOT / "results" / "experiments.csv")   # the committed registry
    expected = summary.headlines(df) if readme.parent == REPO_ROOT else summary.homework_summary(
        df, readme.parent.name.split("_")[0])
    assert _block(readme.read_text()).strip() == "\n".join(expected).strip(), \
        f"{readme.relative_to(REPO_ROOT)}: its results block is stale; run `python -m common.summary`"


@pytest.mark.parametrize("readme", [REPO_ROOT / "README.md", *HOMEWORK_READMES],
                         ids=lambda p: p.parent.name if p.parent != REPO_ROOT else "README")
def test_every_figure_a_readme_states_is_shown_by_the_committed_run(readme):
    if readme.parent == REPO_ROOT:
        notebooks = sorted(REPO_ROOT.glob("hw*_*/hw*_*.ipynb")) + sorted(REPO_ROOT.glob("results/*.ipynb"))
    else:
        notebooks = sorted(readme.parent.glob("*.ipynb"))
    shown = _shown(notebooks)
    missing = [f for f in FIGURE.findall(_outside_blocks(readme.read_text())) if f not in shown]
    assert not missing, f"{readme.relative_to(REPO_ROOT)} states figures the committed run does not show: {missing}"


def test_the_figure_check_catches_a_figure_from_another_run(tmp_path):
    text = "Measured: 0.9917 accuracy, 2.21× faster, version 2.15.1, see common/x1.5/y.\n"
    assert FIGURE.findall(text) == ["0.9917", "2.21"]
    assert [f for f in FIGURE.findall(text) if f not in "accuracy 0.9917"] == ["2.21"]


def test_the_top_level_readme_stays_short():
    assert len((REPO_ROOT / "README.md").read_text().splitlines()) <= 150


def test_the_headlines_start_with_the_baseline_and_show_the_capstones_chain_not_an_ablation():
    df = report.load(REPO_ROOT / "results" / "experiments.csv")
    lines = summary.headlines(df)
    assert lines[2].startswith("| hw1 | baseline | accuracy 0.")              # what every Δ below is measured against
    capstone = next(line for line in lines if line.startswith("| capstone |"))
    cells = [c.strip() for c in capstone.strip("|").split("|")][2:]
    assert all(c.startswith("pruned-int8-openvino:") for c in cells if c), capstone   # int8 alone is an ablation
