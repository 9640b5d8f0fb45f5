"""Test session set-up: keep the committed results registry untouched.

Notebooks re-executed by nbval (and the papermill test) write their rows to a temporary
registry, because ``NNC_RESULTS`` is set here, before any kernel starts. The trained-baseline
cache (``artifacts/``) is shared with normal runs on purpose: it is a cache, not a result.
"""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ["NNC_RESULTS"] = tempfile.mkdtemp(prefix="nnc-test-results-")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
