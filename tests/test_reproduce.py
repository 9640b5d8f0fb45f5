"""Each notebook that nbval re-executed in this session reproduces its committed rows of
``results/experiments.csv`` within the tolerances of :mod:`common.compare` (run last: see the
root ``conftest.py``). This is where trained, fine-tuned and quantized quality is checked on a
machine other than the one that made the committed outputs; nbval compares exactly only the
cells tagged ``nbval-check-output``, whose outputs are machine-independent.

Which notebooks ran is read from the session's own collected items (``request.session.items``),
so it does not depend on how pytest imports ``conftest``."""

import shutil
from pathlib import Path

import pytest

from common import compare, data, env, report, run_all

NOTEBOOKS = {p.stem.split("_")[0]: p for p in run_all.notebooks()}
COMMITTED = env.REPO_ROOT / "results" / "experiments.csv"
#: what the notebooks' defaults run on (hw4's Keras twin uses the classifier's digits)
DEFAULT_DATASETS = set(data.OFFLINE_DEFAULT.values())
#: a copy of the session's registry, for ``python -m common.compare`` after the run
LAST_RUN = env.artifacts_dir() / "last-test-registry.csv"


def collected_notebooks(session) -> set[Path]:
    return {Path(str(i.fspath)).resolve() for i in session.items if str(i.fspath).endswith(".ipynb")}


@pytest.mark.parametrize("homework", list(NOTEBOOKS))
def test_rerun_reproduces_the_committed_rows(homework, request):
    if NOTEBOOKS[homework].resolve() not in collected_notebooks(request.session):
        pytest.skip(f"{NOTEBOOKS[homework].name} was not executed in this session")
    rerun = report.registry_path()
    assert rerun != COMMITTED and rerun.exists(), "the re-executed notebooks wrote no temporary registry"
    LAST_RUN.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(rerun, LAST_RUN)
    if not any(r["homework"] == homework for r in report.read_rows(rerun)):
        pytest.fail(f"{NOTEBOOKS[homework].name} ran but wrote no rows (did a cell fail?)")
    profile = compare.profile(COMMITTED)
    # the committed registry also holds rows of other data (fashion-mnist-small): not re-made here
    problems = compare.differences(COMMITTED, rerun, homework=homework, datasets=DEFAULT_DATASETS)
    assert not problems, (f"{len(problems)} difference(s) from the committed registry ({profile} profile, "
                          f"common.compare):\n" + "\n".join(problems))

