"""The two reference workloads: build, evaluate, and cached baselines (training loops: :mod:`common.train`).

- ``resnet18``: torchvision ResNet-18 with a CIFAR-style stem (3x3 stride-1 first conv, no
  max-pool) for small inputs; trained with SGD + one-cycle; metrics accuracy and macro
  precision / recall / F1.
- ``yolov8n``: ultralytics YOLOv8n, from ``yolov8n.yaml`` (scratch) or pretrained
  ``yolov8n.pt`` (needs the network once); metrics from the ultralytics validator.

:func:`baseline` trains once per (workload, dataset, training config) and caches the result
under ``artifacts/baselines/<key>/``; every notebook calls it, so any notebook run alone
builds what it needs the same way hw1 does.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common import data as data_mod
from common import env
from common.models import (build_resnet18, predict_classes, ultralytics_device,  # noqa: F401  (re-exported)
                           ultralytics_setup)

#: Default training recipes (offline defaults; override any field through ``baseline``).
RECIPES: dict[str, dict[str, Any]] = {
    "resnet18": {"img_size": 32, "epochs": 10, "batch": 64, "lr": 0.05},
    "yolov8n": {"img_size": 128, "epochs": 38, "batch": 16, "lr": 0.01},
}
YOLO_WEIGHTS = ("scratch", "yolov8n.pt")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained baseline (its hash is the cache key)."""

    workload: str
    dataset: str
    img_size: int
    epochs: int
    batch: int
    lr: float
    seed: int = 0
    weights: str = "scratch"

    def __post_init__(self) -> None:
        data_mod.check_workload(self.workload)
        if self.epochs < 1 or self.batch < 1 or self.img_size < 8 or self.lr <= 0:
            raise ValueError(f"need epochs >= 1, batch >= 1, img_size >= 8, lr > 0: {self}")
        if self.workload == "yolov8n" and self.weights not in YOLO_WEIGHTS:
            raise ValueError(f"unknown yolov8n weights {self.weights!r}; choose one of {YOLO_WEIGHTS}")
        if self.workload == "resnet18" and self.weights != "scratch":
            raise ValueError("resnet18 baselines are trained from scratch (weights='scratch')")

    def key(self) -> str:
        digest = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]
        name = Path(self.dataset).name if os.sep in self.dataset else self.dataset
        return f"{self.workload}-{name}-{self.img_size}px-e{self.epochs}-s{self.seed}-{digest}"


@dataclass
class Baseline:
    """A trained reference model and what is needed to evaluate and measure it."""

    config: TrainConfig
    model: Any                 # torch.nn.Module, eval mode, fp32, CPU
    path: Path                 # the model saved whole (fp32), for size and memory measurement
    data: Any                  # ClassificationData, or the detection data.yaml path
    train_seconds: float
    history: list[dict] = field(default_factory=list)
    cached: bool = False

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, 3, self.config.img_size, self.config.img_size)

    @property
    def ultralytics_checkpoint(self) -> Path:
        return self.path.parent / "ultralytics.pt"


# --------------------------------------------------------------------------- building

def yolo(source: str | Path = "yolov8n.yaml"):
    """An ultralytics ``YOLO`` object (quiet, offline-friendly settings)."""
    ultralytics_setup()
    from ultralytics import YOLO

    return YOLO(str(source), task="detect")


def pretrained_yolov8n() -> Path:
    """Path of the pretrained ``yolov8n.pt``, downloaded once into ``artifacts/weights``."""
    path = env.artifacts_dir() / "weights" / "yolov8n.pt"
    if path.exists():
        return path
    if not env.online():
        raise data_mod.DatasetError("pretrained yolov8n.pt must be downloaded but this machine is "
                                    "offline; use weights='scratch' (trained by the repo) instead")
    ultralytics_setup()
    from ultralytics.utils.downloads import attempt_download_asset

    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(attempt_download_asset(str(path)))


# --------------------------------------------------------------------------- baselines

def recipe(workload: str, **overrides) -> dict:
    data_mod.check_workload(workload)
    unknown = set(overrides) - set(RECIPES[workload]) - {"seed", "weights"}
    if unknown:
        raise ValueError(f"unknown training options {sorted(unknown)}; valid: "
                         f"{sorted(RECIPES[workload]) + ['seed', 'weights']}")
    return {**RECIPES[workload], **overrides}


def baseline(workload: str, dataset: str | None = None, *, retrain: bool = False,
             **overrides) -> Baseline:
    """The trained baseline for ``workload`` on ``dataset`` (offline default when None),
    trained on first use and cached in ``artifacts/baselines`` and in the machine-wide cache
    (:func:`_shared_baseline`: a fresh clone on a machine that already trained it, with the same
    training code and libraries, copies it instead of training); ``overrides`` change the recipe.
    Training always uses :data:`TRAIN_THREADS` threads; the caller's count is restored after.
    It runs on :func:`common.env.compute_device` (a notebook's ``DEVICE``)."""
    import torch

    from common import train   # imported here: train pulls in ultralytics and the trainers, which a plain import of workloads should not

    data_mod.check_workload(workload)
    dataset = data_mod.resolve(workload, dataset or data_mod.OFFLINE_DEFAULT[workload])
    cfg = TrainConfig(workload=workload, dataset=dataset, **recipe(workload, **overrides))
    if workload == "yolov8n" and cfg.weights == "yolov8n.pt":
        pretrained_yolov8n()  # fails early when offline
    ds = (data_mod.load_classification(dataset, cfg.img_size, cfg.seed) if workload == "resnet18"
          else data_mod.detection_yaml(dataset))
    root = env.artifacts_dir() / "baselines"
    final = root / device_key(cfg)
    meta_path = final / "meta.json"
    shared = _shared_baseline(cfg)
    if retrain and final.exists():
        shutil.rmtree(final)
    if not retrain and not meta_path.exists() and shared is not None and (shared / "meta.json").exists():
        _copy_dir(shared, final)   # trained by another clone on this machine, with this very code
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        model = torch.load(final / "model.pt", map_location="cpu", weights_only=False).eval()
        return Baseline(cfg, model, final / "model.pt", ds, meta["train_seconds"],
                        meta["history"], cached=True)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{cfg.key()}-", dir=root))
    threads_before = torch.get_num_threads()
    try:
        env.seed_everything(cfg.seed)
        t0 = time.perf_counter()
        desc = f"{workload}/{Path(dataset).name}: training {cfg.epochs} epochs"
        if workload == "resnet18":
            model = build_resnet18(len(ds.classes))
            env.set_threads(TRAIN_THREADS)
            history = train.fit_classifier(model, ds, epochs=cfg.epochs, lr=cfg.lr, batch=cfg.batch,
                                     seed=cfg.seed, desc=desc)
        else:
            source = "yolov8n.yaml" if cfg.weights == "scratch" else pretrained_yolov8n()
            y = yolo(source)
            env.set_threads(TRAIN_THREADS)   # after ultralytics is imported: it would drop to cpu_count - 1
            history, model = train.fit_detector(y, ds, epochs=cfg.epochs, img_size=cfg.img_size,
                                          batch=cfg.batch, lr=cfg.lr, seed=cfg.seed,
                                          project=tmp / "ultralytics", desc=desc)
            # ultralytics' own checkpoint (metadata for val / predict / export), with the fp32 model
            ckpt = torch.load(tmp / "ultralytics" / "train" / "weights" / "last.pt",
                              map_location="cpu", weights_only=False)
            ckpt.update(model=deepcopy(model), ema=None)
            torch.save(ckpt, tmp / "ultralytics.pt")
            shutil.rmtree(tmp / "ultralytics")
        train_seconds = time.perf_counter() - t0
        model = model.float().cpu().eval()
        torch.save(model, tmp / "model.pt")
        (tmp / "meta.json").write_text(json.dumps(
            {"config": asdict(cfg), "train_seconds": train_seconds, "history": history,
             "threads": torch.get_num_threads(), "device": env.compute_device(),
             "gpu": env.gpu_name() if env.compute_device() == "cuda" else None,
             "versions": env.versions()}, indent=1))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        env.set_threads(threads_before)
    if shared is not None:
        _copy_dir(final, shared)
    return Baseline(cfg, model, final / "model.pt", ds, train_seconds, history, cached=False)


#: Intra-op threads every baseline trains with, whoever trains it first (a notebook with its own
#: THREADS, a test, a fresh clone): float sums depend on the thread count, so the cached baseline
#: must not. A unit test that trained the detector under ultralytics' own default (cpu_count - 1)
#: had made a fresh clone's baseline differ from the committed one on the same machine.
TRAIN_THREADS = env.DEFAULT_THREADS

#: The code a trained baseline depends on: a change to any of these (or to a tracked library's
#: version) retrains instead of reusing a baseline from the machine-wide cache.
TRAINING_SOURCES = ("workloads.py", "models.py", "train.py", "data.py", "shapes.py", "env.py")


def training_fingerprint() -> str:
    """12 hex digits of :data:`TRAINING_SOURCES` and the tracked library versions."""
    h = hashlib.sha256()
    for name in TRAINING_SOURCES:
        h.update((Path(__file__).parent / name).read_bytes())
    h.update(json.dumps(env.versions(), sort_keys=True).encode())
    return h.hexdigest()[:12]


def _shared_baseline(cfg: TrainConfig) -> Path | None:
    """Where ``cfg``'s baseline lives in the machine-wide cache (:func:`common.env.shared_cache_dir`),
    which every clone shares like the virtual environment; None when that cache is off."""
    root = env.shared_cache_dir()
    return None if root is None else root / "baselines" / f"{device_key(cfg)}-{training_fingerprint()}"


def device_key(cfg: TrainConfig) -> str:
    """``cfg.key()``, and "-cuda" after it for a baseline trained on the GPU: its weights differ
    from the CPU's, so the two never share a cache entry (CPU keys are unchanged)."""
    return cfg.key() + ("-cuda" if env.compute_device() == "cuda" else "")


def _copy_dir(src: Path, dst: Path) -> None:
    """Copy a baseline folder whole or not at all (a temporary sibling renamed into place);
    another process that got there first wins, and an unwritable cache is skipped."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dst.name}-", dir=dst.parent))
    except OSError:
        return
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        tmp.rename(dst)
    except OSError:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def variant(bl: Baseline, model, out_dir: str | Path) -> Baseline:
    """A compressed model packaged like a baseline, so that ``evaluate``, ``measure`` and
    ``export.export`` treat it exactly as they treat the baseline: the whole module saved to
    ``out_dir/model.pt`` (it reloads as itself, e.g. with fewer channels) and, for YOLO, an
    ultralytics checkpoint ``out_dir/ultralytics.pt`` that carries this model."""
    import torch

    from common.pruning import save_module

    out_dir = Path(out_dir)
    model = model.float().cpu().eval()
    path = save_module(model, out_dir / "model.pt")
    if bl.config.workload == "yolov8n":
        ckpt = torch.load(bl.ultralytics_checkpoint, map_location="cpu", weights_only=False)
        ckpt.update(model=deepcopy(model), ema=None)
        tmp = out_dir / "ultralytics.pt.tmp"
        torch.save(ckpt, tmp)
        tmp.replace(out_dir / "ultralytics.pt")
    return Baseline(bl.config, model, path, bl.data, 0.0, [], cached=False)


# --------------------------------------------------------------------------- evaluation

def evaluate_classifier(model, data, split: str = "test", *, threads: int = env.DEFAULT_THREADS,
                        batch: int = 256) -> dict[str, float]:
    """Accuracy and macro precision / recall / F1 of a torch module or an exported model."""
    from common import backends
    from common.metrics import classification_metrics

    x, y = data.split(split)
    if _is_module(model):     # a module runs on the compute device and is handed back where it was
        home = next(model.parameters()).device
        try:
            preds = predict_classes(model.to(env.compute_device()), x, batch=batch)
        finally:
            model.to(home)
    else:                     # an exported model runs in its own runtime, on the CPU
        preds = predict_classes(backends.load(model, threads=threads), x, batch=batch)
    return classification_metrics(y.numpy(), preds, n_classes=len(data.classes))


def _is_module(obj) -> bool:
    import torch

    return isinstance(obj, torch.nn.Module)


def evaluate_detector(model, data_yaml: str, split: str = "test", *, img_size: int = 128,
                      batch: int = 16, checkpoint: str | Path | None = None,
                      half: bool = False, device: str | None = None) -> dict[str, float]:
    """Precision, recall, mAP50 and mAP50-95 from the ultralytics validator.

    ``model`` is a path ultralytics can load (.pt, .onnx, OpenVINO folder, .torchscript,
    .tflite) or a ``DetectionModel`` module; a module is validated through a copy wrapped in
    ``checkpoint``'s YOLO object (the module is never modified). ``rect=False``: every image
    is letterboxed to ``img_size`` x ``img_size``, the input every exported model gets and the
    one latency is measured at (ultralytics' default rectangular batching would pad 128 px
    images to 160 px for PyTorch models only, and score them differently from their exports).
    A dataset without a test split is scored on ``val`` (:func:`common.data.detection_split`).
    ``device`` (ultralytics' spelling) defaults to :func:`common.env.compute_device` for a module
    or a ``.pt`` file and to the CPU for exported formats, which run on their CPU runtimes.
    """
    torch_model = _is_module(model) or Path(model).suffix == ".pt"
    device = device or (ultralytics_device() if torch_model else "cpu")
    if _is_module(model):
        if checkpoint is None:
            raise ValueError("evaluating a DetectionModel module needs checkpoint= (an ultralytics "
                             ".pt of the same task) to wrap it")
        y = yolo(checkpoint)
        y.model = deepcopy(model).float()
    else:
        path = Path(model)
        y = yolo(path.parent if path.suffix == ".xml" else path)  # ultralytics wants the folder
    split = data_mod.detection_split(str(data_yaml), split)   # "test" -> "val" when there is no test split
    r = y.val(data=str(data_yaml), split=split, imgsz=img_size, batch=batch, device=device,
              half=half, rect=False, plots=False, verbose=False, workers=0, save_json=False)
    return {"precision": float(r.box.mp), "recall": float(r.box.mr),
            "map50": float(r.box.map50), "map50_95": float(r.box.map)}


def predict_boxes(bl: Baseline, images: list[Path], conf: float = 0.25, *,
                  artifact: str | Path | None = None) -> list[np.ndarray]:
    """Predicted boxes per image as N x 6 arrays (x1, y1, x2, y2, confidence, class), pixels.
    ``artifact``: an exported detector ultralytics runs (ONNX file, OpenVINO folder, ...) in
    place of the baseline's PyTorch module."""
    y = yolo(bl.ultralytics_checkpoint if artifact is None else artifact)
    if artifact is None:
        y.model = deepcopy(bl.model).float()
    # an exported model is loaded at the first call, with "Loading ... for ONNX Runtime inference"
    with contextlib.redirect_stdout(io.StringIO()) if artifact is not None else contextlib.nullcontext():
        results = y.predict([str(p) for p in images], imgsz=bl.config.img_size, conf=conf,
                            device="cpu", verbose=False)
    return [np.concatenate([r.boxes.xyxy.numpy(), r.boxes.conf.numpy()[:, None],
                            r.boxes.cls.numpy()[:, None]], axis=1) for r in results]


def real_photos() -> list[Path]:
    """The two photos ultralytics ships, ``bus.jpg`` and ``zidane.jpg`` (a street, two people):
    what a detector does to real images, whatever it was trained on."""
    from ultralytics.utils import ASSETS

    return [Path(ASSETS) / "bus.jpg", Path(ASSETS) / "zidane.jpg"]


def sample_inputs(bl: Baseline, n: int, split: str = "test", seed: int | None = None) -> np.ndarray:
    """``n`` images of a split as the model's float32 NCHW input (classifier: normalised tensors;
    detector: RGB / 255 resized to the model's square input; a detection set without a test split
    gives val for "test"): the first ``n``, or with ``seed`` ``n`` drawn at random without
    replacement (in split order)."""
    if n < 1:
        raise ValueError(f"need at least one image, got n={n}")
    images = None if bl.config.workload == "resnet18" else data_mod.detection_images(
        bl.data, data_mod.detection_split(bl.data, split))   # "test" -> "val" when there is no test split
    total = len(bl.data.split(split)[0]) if images is None else len(images)
    if seed is None:
        idx = list(range(min(n, total)))
    else:
        import torch

        idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].sort().values.tolist()
    if bl.config.workload == "resnet18":
        return bl.data.split(split)[0][idx].numpy()
    from PIL import Image

    s = bl.config.img_size
    files = [images[i] for i in idx]
    return np.stack([np.asarray(Image.open(f).convert("RGB").resize((s, s)), dtype=np.float32)
                     .transpose(2, 0, 1) / 255.0 for f in files])


def evaluate(bl: Baseline, model=None, split: str = "test", **kwargs) -> dict[str, float]:
    """Metrics of ``model`` (default: the baseline itself) on the baseline's data and split."""
    model = bl.model if model is None else model
    if bl.config.workload == "resnet18":
        return evaluate_classifier(model, bl.data, split, **kwargs)
    kwargs.setdefault("img_size", bl.config.img_size)
    kwargs.setdefault("checkpoint", bl.ultralytics_checkpoint)
    return evaluate_detector(model, bl.data, split, **kwargs)
