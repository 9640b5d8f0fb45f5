"""Environment: paths, seeding, thread count, device choice, CPU description, versions."""

from __future__ import annotations

import os
import platform
import random
import socket
from functools import lru_cache
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Thread count used by every backend unless a notebook says otherwise.
DEFAULT_THREADS = 2

#: Libraries whose versions are recorded next to measurements.
TRACKED_PACKAGES = (
    "torch", "torchvision", "ultralytics", "onnx", "onnxruntime", "openvino", "nncf",
    "torch-pruning", "tensorflow", "tensorflow-model-optimization", "ai-edge-litert",
    "litert-torch", "scikit-learn", "numpy",
)

#: CPU flags worth knowing for int8 / fp16 inference.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
             "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16")


def artifacts_dir() -> Path:
    """Git-ignored cache of data, trained baselines and exports (``$NNC_ARTIFACTS`` overrides)."""
    path = Path(os.environ.get("NNC_ARTIFACTS", REPO_ROOT / "artifacts")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_cache_dir() -> Path | None:
    """Machine-wide cache that every clone shares, beside the virtual environment:
    ``$NNC_SHARED_CACHE``, else ``$XDG_CACHE_HOME`` or ``~/.cache``, then ``nn-compression``;
    ``NNC_SHARED_CACHE=""`` (or ``0``) turns it off."""
    value = os.environ.get("NNC_SHARED_CACHE")
    if value is not None and value.strip() in ("", "0"):
        return None
    if value:
        return Path(value).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "nn-compression"


def ultralytics_env() -> None:
    """Environment for ultralytics, set before it is first imported (``import common`` does
    this): a project-local settings folder under ``artifacts/``, quiet logs, and no telemetry
    or automatic pip installs (``YOLO_OFFLINE``). Downloads the user asks for still work."""
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(os.environ.get(
        "NNC_ARTIFACTS", REPO_ROOT / "artifacts")).expanduser() / "ultralytics"))
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_OFFLINE", "True")


def results_dir() -> Path:
    """Folder of the committed results registry (``$NNC_RESULTS`` overrides, e.g. in tests)."""
    path = Path(os.environ.get("NNC_RESULTS", REPO_ROOT / "results")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def set_threads(threads: int = DEFAULT_THREADS) -> int:
    """Fix the intra-op thread count of torch (other backends take it as an argument)."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    import sys

    import torch

    torch.set_num_threads(threads)
    # ultralytics resets torch's threads to cpu_count - 1 in every select_device() and gives
    # its LiteRT interpreters that many threads: make it use ours
    for name in ("ultralytics.utils", "ultralytics.utils.torch_utils", "ultralytics.nn.backends.litert"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "NUM_THREADS"):
            module.NUM_THREADS = threads
    try:  # may only be set once per process, before any inter-op work
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    return threads


def seed_everything(seed: int = 0) -> None:
    """Seed python, numpy and torch, and make torch's kernels deterministic (CPU and CUDA)."""
    import numpy as np
    import torch

    # cuBLAS is deterministic only with a fixed workspace (read when CUDA first runs a GEMM)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def setup(seed: int = 0, threads: int = DEFAULT_THREADS) -> dict:
    """Seed, fix threads, keep ultralytics quiet and offline-friendly; returns an env summary."""
    ultralytics_env()
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    seed_everything(seed)
    set_threads(threads)
    return {"seed": seed, "threads": threads, "device": device(), **cpu_info()}


#: The devices a notebook's ``DEVICE`` parameter may name.
DEVICES = ("auto", "cpu", "cuda")
#: Pins what ``"auto"`` means for a whole process tree (``cpu`` or ``cuda``): the test session
#: sets ``cpu``, so a CUDA machine re-executes the committed (CPU-made) notebooks on the CPU.
DEVICE_ENV = "NNC_DEVICE"
_compute_device = "cpu"


def device(prefer: str = "auto") -> str:
    """'cuda' when asked for (or 'auto') and present, else 'cpu'; ``$NNC_DEVICE`` pins 'auto'.
    Unknown names raise naming the valid ones; 'cuda' without a CUDA GPU raises."""
    if prefer not in DEVICES:
        raise ValueError(f"unknown device {prefer!r}; choose one of: {', '.join(DEVICES)}")
    if prefer == "auto":
        pinned = os.environ.get(DEVICE_ENV, "").strip()
        if pinned and pinned not in ("cpu", "cuda"):
            raise ValueError(f"{DEVICE_ENV}={pinned!r}; choose cpu or cuda (or leave it unset)")
        prefer = pinned or "auto"
    if prefer == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if prefer == "cuda":
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA GPU; use 'cpu' or 'auto'")
    return "cpu"


def set_device(prefer: str = "auto") -> str:
    """Resolve ``prefer`` (:func:`device`) and make it the device every later training,
    fine-tune, distillation, QAT and evaluation of a torch module runs on; returns it.
    Latency on the CPU is always measured on the CPU, whatever this is."""
    global _compute_device
    _compute_device = device(prefer)
    return _compute_device


def gpu_measurements() -> tuple[bool, str]:
    """Whether GPU latency, VRAM and fp16-on-CUDA rows may be measured in this process, and why
    not: a session that pins ``$NNC_DEVICE`` to ``cpu`` (the test session: its rows are held
    against CPU-made committed rows, whose GPU columns are empty) measures nothing on a GPU
    even where one is present; elsewhere it needs a CUDA device torch can see."""
    if os.environ.get(DEVICE_ENV, "").strip() == "cpu":
        return False, f"{DEVICE_ENV}=cpu pins this session to the CPU"
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA"
    return True, ""


def compute_device() -> str:
    """The device training and evaluation run on ('cpu' until :func:`set_device` says otherwise)."""
    return _compute_device


@lru_cache(maxsize=1)
def cpu_info() -> dict:
    """CPU model, logical cores and the ISA flags relevant for quantized inference."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count() or 1,
        "isa": " ".join(f for f in ISA_FLAGS if f in flags) or "unknown",
    }


def has_isa(*flags: str) -> bool:
    """Whether this CPU reports any of ``flags`` (names of :data:`ISA_FLAGS`, as in /proc/cpuinfo)."""
    unknown = sorted(set(flags) - set(ISA_FLAGS))
    if not flags or unknown:
        raise ValueError(f"ISA flags {unknown or '(none)'}: choose from {', '.join(ISA_FLAGS)}")
    return bool(set(flags) & set(cpu_info()["isa"].split()))


def versions(packages: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of the tracked packages ('-' when missing)."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def gpu_name() -> str | None:
    """Name of the CUDA device, or None without one."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def online(host: str = "github.com", port: int = 443, timeout: float = 3.0) -> bool:
    """True when ``host`` can be reached (used to refuse downloads early when offline)."""
    if os.environ.get("NNC_OFFLINE", "") not in ("", "0"):
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
