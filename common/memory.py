"""Peak RAM (and VRAM on CUDA) of loading a saved model and running inference, measured in a
fresh Python process so that whatever the notebook did before cannot pollute the number.

The child imports the runtime, loads the artifact through :func:`common.backends.load`, runs
``runs`` inferences on a zero input and reports ``VmHWM`` from ``/proc/self/status`` (the
kernel's high-water mark of resident memory of this process: interpreter + runtime + model +
activations) and, on CUDA, the device memory the runtime took: free device memory
(``cudaMemGetInfo``) after the CUDA context exists and before the model is loaded, minus free
memory after the inferences. That sees every runtime's allocations (PyTorch's caching allocator,
ONNX Runtime's arena, TensorRT's engine), where ``torch.cuda.max_memory_allocated`` sees only
PyTorch's tensors; it counts whatever else starts on the GPU meanwhile, so the GPU should be
otherwise idle (the GPU command runs one measurement at a time). ``getrusage``'s ``ru_maxrss``
is not used: Linux carries it over from the parent across fork + exec, so a child of a large
notebook process would report the notebook's peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from common.env import DEFAULT_THREADS, REPO_ROOT

MB = float(1 << 20)


@dataclass(frozen=True)
class MemoryStats:
    peak_rss_mb: float       # whole process, high-water mark
    baseline_rss_mb: float   # after importing numpy only, before the runtime
    vram_mb: float | None    # device memory the runtime took on CUDA (any runtime); None on the CPU
    runs: int

    @property
    def model_rss_mb(self) -> float:
        """What the runtime + model + inference added on top of a bare interpreter."""
        return self.peak_rss_mb - self.baseline_rss_mb


def peak_memory(artifact: str | Path, input_shape: tuple[int, ...], *, threads: int = DEFAULT_THREADS,
                device: str = "cpu", runs: int = 10, timeout: float = 600, **load_options) -> MemoryStats:
    """Measure load + ``runs`` inferences of ``artifact`` in a child process; ``load_options``
    (e.g. ``precision``, ``provider``) go to :func:`common.backends.load`."""
    spec = {"artifact": str(Path(artifact).resolve()), "shape": list(input_shape),
            "threads": threads, "device": device, "runs": runs, "options": load_options}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-m", "common.memory", json.dumps(spec)],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO_ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"memory measurement of {Path(artifact).name} failed "
                           f"(exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    out = json.loads(lines[-1])
    return MemoryStats(out["peak_rss_mb"], out["baseline_rss_mb"], out["vram_mb"], runs)


def _high_water_mb() -> float:
    """Peak resident memory of this process so far (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / MB
    raise RuntimeError("/proc/self/status has no VmHWM: peak memory needs Linux")


def _child(spec: dict) -> dict:
    import numpy as np

    baseline = _high_water_mb()
    cuda = spec["device"] == "cuda"
    if cuda:          # the CUDA context first: it is not the model's, and every runtime shares it
        import torch

        torch.cuda.init()
        torch.zeros(1, device="cuda")
        free_before = torch.cuda.mem_get_info()[0]
    from common import backends

    backend = backends.load(spec["artifact"], threads=spec["threads"], device=spec["device"],
                            **spec.get("options", {}))
    x = backend.prepare(np.zeros(spec["shape"], dtype=np.float32))
    for _ in range(spec["runs"]):
        backend.run(x)
    if backend.sync:
        backend.sync()
    vram = (free_before - torch.cuda.mem_get_info()[0]) / MB if cuda else None
    peak = _high_water_mb()
    return {"peak_rss_mb": peak, "baseline_rss_mb": baseline, "vram_mb": vram}


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
