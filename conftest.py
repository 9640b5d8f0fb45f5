"""Test session set-up (repository root, so it applies to the unit tests and to every notebook
that nbval collects, whichever of them a run selects).

- The committed results registry stays untouched: notebooks re-executed by nbval (and the
  papermill test) write their rows to a temporary registry, because ``NNC_RESULTS`` is set here,
  before any kernel starts. The trained-baseline cache (``artifacts/``) is shared with normal
  runs on purpose: it is a cache, not a result.
- Latencies are timed briefly and peak RAM is not measured (``NNC_QUICK_TIMING``,
  :func:`common.measure.quick_timing`: 1 warm-up, 3 timed calls, no fresh process for RAM): no test
  compares a timing or a RAM figure, so the notebooks' re-execution does not spend minutes producing
  figures it discards. Sizes and every quality figure are measured as in a full run.
- ``DEVICE="auto"`` means the CPU (``NNC_DEVICE=cpu``, :func:`common.env.device`): on a CUDA
  machine the notebooks still train and evaluate on the CPU, as the committed outputs were made.
- The check profile (:mod:`common.profiles`): the notebooks with one are re-executed as a check
  copy (smaller parameters, written beside each notebook here and removed at the end) instead of
  as committed, and held against ``results/check/experiments.csv``; ``NNC_FULL_CHECK=1`` re-executes
  every notebook as committed instead.
- ``tests/test_reproduce.py`` compares that temporary registry with the committed one, so its
  tests run last, after every notebook of the session; a homework whose notebook was not
  collected is skipped there, one that was collected must have written its rows.
"""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
os.environ["NNC_RESULTS"] = tempfile.mkdtemp(prefix="nnc-test-results-")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ["NNC_QUICK_TIMING"] = "1"
os.environ["NNC_DEVICE"] = "cpu"    # DEVICE="auto" means the CPU here: the committed outputs are CPU-made
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import profiles, run_all  # noqa: E402  (after the path set-up above)

LAST = "tests/test_reproduce.py"
COPIES: list[Path] = []
PROFILED = {p.resolve() for p in run_all.notebooks() if profiles.homework(p) in profiles.CHECK}


def pytest_configure(config):
    if not profiles.full_check():
        COPIES.extend(profiles.write_copy(p) for p in sorted(PROFILED))


def pytest_ignore_collect(collection_path, config):
    """A notebook with a check profile is collected as its check copy, not as committed."""
    path = Path(collection_path).resolve()
    if not profiles.full_check() and path in PROFILED:
        return True
    if path.suffix == ".ipynb" and path.name.startswith(".") and path not in {c.resolve() for c in COPIES}:
        return True   # another hidden notebook: make homeworks' temporary copy, a stale check copy
    return None


def pytest_unconfigure(config):
    for copy in COPIES:
        copy.unlink(missing_ok=True)


def pytest_collection_modifyitems(session, config, items):
    last = [i for i in items if i.nodeid.startswith(LAST)]
    items[:] = [i for i in items if not i.nodeid.startswith(LAST)] + last
