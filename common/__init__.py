"""Shared code for the neural-network compression homeworks.

Split by concern, imported by every notebook (nothing is pasted into a notebook):

- ``common.env``       seeding, thread count, device, CPU description, library versions
- ``common.data``      datasets by name (offline defaults and real ones), loaders, calibration subsets
- ``common.shapes``    the generated ``shapes`` detection dataset
- ``common.workloads`` build / train / evaluate the two reference workloads, cached baselines
- ``common.backends``  one inference interface over PyTorch, TorchScript, ONNX Runtime, OpenVINO, LiteRT
- ``common.timing``    the latency harness used for every backend
- ``common.memory``    peak RAM / VRAM of load + inference, measured in a fresh process
- ``common.size``      bytes on disk, gzip bytes, params, FLOPs, sparsity
- ``common.metrics``   classification metrics (checked against scikit-learn)
- ``common.registry``  the results registry ``results/experiments.csv``: schema, upsert, load
- ``common.report``    tables and plots of registry rows (re-exports the registry's API)
- ``common.summary``   ``results/README.md`` and the READMEs' generated results blocks
- ``common.files``     atomic writes: a reader never sees a half-written file
- ``common.run_all``   executes every homework notebook with papermill

Heavy libraries (torch, ultralytics, openvino, ...) are imported lazily inside functions.
"""

from common.env import ultralytics_env as _ultralytics_env

__version__ = "0.1.0"
_ultralytics_env()  # must precede the first import of ultralytics; cheap, stdlib only
