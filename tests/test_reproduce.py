"""Each notebook that nbval re-executed in this session reproduces its committed rows of
``results/experiments.csv`` within the tolerances of :mod:`common.compare` (run last: see the
root ``conftest.py``). This is where trained, fine-tuned and quantized quality is checked on a
machine other than the one that made the committed outputs; nbval compares exactly only the
cells tagged ``nbval-check-output``, whose outputs are machine-independent."""

import pytest

import conftest
from common import compare, data, env, report, run_all

NOTEBOOKS = {p.stem.split("_")[0]: p for p in run_all.notebooks()}
COMMITTED = env.REPO_ROOT / "results" / "experiments.csv"
#: what the notebooks' defaults run on (hw4's Keras twin uses the classifier's digits)
DEFAULT_DATASETS = set(data.OFFLINE_DEFAULT.values())


@pytest.mark.parametrize("homework", list(NOTEBOOKS))
def test_rerun_reproduces_the_committed_rows(homework):
    if NOTEBOOKS[homework].resolve() not in conftest.COLLECTED_NOTEBOOKS:
        pytest.skip(f"{NOTEBOOKS[homework].name} was not executed in this session")
    rerun = report.registry_path()
    assert rerun != COMMITTED and rerun.exists(), "the re-executed notebooks wrote no temporary registry"
    if not any(r["homework"] == homework for r in report.read_rows(rerun)):
        pytest.fail(f"{NOTEBOOKS[homework].name} ran but wrote no rows (did a cell fail?)")
    # the committed registry also holds rows of other data (fashion-mnist-small): not re-made here
    problems = compare.differences(COMMITTED, rerun, homework=homework, datasets=DEFAULT_DATASETS)
    assert not problems, f"{len(problems)} difference(s) from the committed registry:\n" + "\n".join(problems)
