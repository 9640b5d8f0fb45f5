"""Each notebook that nbval re-executed in this session reproduces its committed rows within the
tolerances of :mod:`common.compare`: ``results/experiments.csv`` for a notebook re-executed as
committed, ``results/check/experiments.csv`` for one re-executed as its check copy
(:mod:`common.profiles`: the same code at a smaller scale) (run last: see the
root ``conftest.py``). This is where trained, fine-tuned and quantized quality is checked on a
machine other than the one that made the committed outputs; nbval compares exactly only the
cells tagged ``nbval-check-output``, whose outputs are machine-independent.

Which notebooks ran is read from the session's own collected items (``request.session.items``),
so it does not depend on how pytest imports ``conftest``."""

import shutil
from pathlib import Path

import pytest

from common import compare, data, env, profiles, report, run_all

NOTEBOOKS = {p.stem.split("_")[0]: p for p in run_all.notebooks()}
COMMITTED = env.REPO_ROOT / "results" / "experiments.csv"
#: what the notebooks' defaults run on (hw4's Keras twin uses the classifier's digits)
DEFAULT_DATASETS = set(data.OFFLINE_DEFAULT.values())
#: a copy of the session's registry, for ``python -m common.compare`` after the run
LAST_RUN = env.artifacts_dir() / "last-test-registry.csv"


def collected_homeworks(session) -> set[str]:
    """Homeworks whose notebook (as committed, or its check copy) this session collected."""
    return {profiles.homework(Path(str(i.fspath))) for i in session.items if str(i.fspath).endswith(".ipynb")}


@pytest.mark.parametrize("homework", list(NOTEBOOKS))
def test_rerun_reproduces_the_committed_rows(homework, request):
    if homework not in collected_homeworks(request.session):
        pytest.skip(f"{NOTEBOOKS[homework].name} was not executed in this session")
    committed = profiles.registry(homework)   # check rows for a notebook re-executed at the check profile
    rerun = report.registry_path()
    assert rerun != COMMITTED and rerun.exists(), "the re-executed notebooks wrote no temporary registry"
    LAST_RUN.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(rerun, LAST_RUN)
    if not any(r["homework"] == homework for r in report.read_rows(rerun)):
        pytest.fail(f"{NOTEBOOKS[homework].name} ran but wrote no rows (did a cell fail?)")
    profile = compare.profile(committed)
    # the committed registry also holds rows of other data (fashion-mnist-small): not re-made here
    problems = compare.differences(committed, rerun, homework=homework, datasets=DEFAULT_DATASETS)
    assert not problems, (f"{len(problems)} difference(s) from {committed.relative_to(env.REPO_ROOT)} ({profile} "
                          f"profile, common.compare):\n" + "\n".join(problems))

