"""The check profile: every notebook's code at a smaller scale, for ``make test``.

The committed notebooks run at course scale (``make homeworks``, 58 min 26 s on two cores at 9404e4b).
Re-executing all of them under ``make test`` took 48 minutes, over the 40 the course allows. So
``make test`` re-executes the longest notebooks with the smaller parameters in :data:`CHECK`
(fewer sweep points and epochs; the same cells, functions and libraries) and holds their
rows against rows committed for that profile, ``results/check/experiments.csv``, which
``python -m common.run_all --profile check`` regenerates (after any change to the course, as
the notebooks' own outputs are). A notebook not in :data:`CHECK` (hw1, hw5) is re-executed as
committed and held against the course-scale registry.

Under the profile, budgets and targets are reported but not asserted (:func:`active` makes
:func:`common.params.is_default` false): they are the course's claims about the course-scale
run, which ``make homeworks`` asserts. ``NNC_FULL_CHECK=1`` makes ``make test`` re-execute every
notebook as committed instead (course scale, about 48 minutes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from common.env import REPO_ROOT

PROFILE_ENV = "NNC_PROFILE"
FULL_ENV = "NNC_FULL_CHECK"
PROFILES = ("course", "check")
CHECK_DIR = REPO_ROOT / "results" / "check"
PREFIX = ".check-"

#: homework -> papermill parameters of its check profile (each one declared in its notebook)
CHECK: dict[str, dict[str, Any]] = {
    "hw2": {"CALIBRATION_SWEEP": [1, 16], "KEEP_FLOAT": [0, 8], "QAT_ROUNDS": 1,
            "CALIBRATION": 100},
    "hw3": {"SPARSITIES": [0.5, 0.9], "SIZE_SPARSITIES": [0.5, 0.9], "RATIOS": [0.5], "CRITERIA": ["l1", "fpgm"],
            "TARGET_FT_EPOCHS": {"resnet18": 1, "yolov8n": 1}, "SCAN_IMAGES": 60, "SMALL_EPOCHS": 1},
    "hw4": {"CLUSTERS": [4, 16], "TF_EPOCHS": 10, "TF_FT_EPOCHS": 1, "CQAT_EPOCHS": 1},
    "hw6": {"TEMPERATURES": [4.0], "EPOCHS": 3, "DET_EPOCHS": 2, "DET_KD_WEIGHTS": [2.0]},
    "capstone": {"FT_EPOCHS": {"resnet18": 1, "yolov8n": 2}, "CALIBRATION": 100},
}


def active() -> str:
    """The profile this process runs under (``$NNC_PROFILE``; default ``course``), checked."""
    name = os.environ.get(PROFILE_ENV, "course").strip() or "course"
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={name!r}; choose one of: {', '.join(PROFILES)}")
    return name


def homework(notebook: Path) -> str:
    """``hw3`` for ``hw3_pruning/hw3_pruning.ipynb`` (and its check copy), ``capstone`` for the capstone."""
    stem = Path(notebook).stem
    return stem[len(PREFIX):].split("_")[0] if stem.startswith(PREFIX) else stem.split("_")[0]


def copy_path(notebook: Path) -> Path:
    """Where the check copy of ``notebook`` lives: beside it, hidden and git-ignored."""
    notebook = Path(notebook)
    return notebook.with_name(PREFIX + notebook.name)


def write_copy(notebook: Path) -> Path:
    """Write the check copy of ``notebook``: its cells with the outputs cleared and, after the
    ``parameters`` cell, papermill's injected-parameters cell with :data:`CHECK`'s values (the
    cell ``make homeworks -p`` would inject). Written whole or not at all."""
    import nbformat
    from papermill.parameterize import parameterize_notebook

    from common import files

    notebook = Path(notebook)
    overrides = CHECK[homework(notebook)]
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            tags = [t for t in cell.metadata.get("tags", []) if t != "nbval-check-output"]
            cell.metadata["tags"] = tags   # outputs of another scale: executed, not compared
    nb = parameterize_notebook(nb, overrides, report_mode=False)
    at = next(i for i, c in enumerate(nb.cells) if "injected-parameters" in c.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(
        f"import os\nos.environ[{PROFILE_ENV!r}] = \"check\"   # common.profiles: budgets reported, not asserted",
        metadata={"tags": ["check-profile"]}))
    dst = copy_path(notebook)
    files.write_text(dst, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return dst


def registry(homework_name: str) -> Path:
    """The committed registry a re-execution of ``homework_name`` under ``make test`` is held
    against: the check rows for a profiled homework, the course rows otherwise."""
    if homework_name in CHECK and not full_check():
        return CHECK_DIR / "experiments.csv"
    return REPO_ROOT / "results" / "experiments.csv"


def full_check() -> bool:
    """Whether ``make test`` re-executes every notebook at course scale (``$NNC_FULL_CHECK=1``)."""
    return os.environ.get(FULL_ENV, "").strip() not in ("", "0")
