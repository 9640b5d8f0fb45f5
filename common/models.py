"""The two architectures as code that runs them: ResNet-18 built for small inputs, ultralytics set up
quietly, arg-max predictions and ultralytics' device name. A leaf under :mod:`common.train` and
:mod:`common.workloads` (both import it; it imports neither) and part of the training fingerprint
(:data:`common.workloads.TRAINING_SOURCES`)."""

from __future__ import annotations

import numpy as np

from common import env


def build_resnet18(num_classes: int = 10) -> "torch.nn.Module":
    """torchvision ResNet-18 with a CIFAR-style stem: 3x3/1 first conv and no max-pool."""
    import torch.nn as nn
    import torchvision

    model = torchvision.models.resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def ultralytics_setup() -> None:
    """Point ultralytics at a project-local, git-ignored settings folder with integrations
    (MLflow, W&B, ...) off, datasets and runs under ``artifacts/``, and our thread count kept."""
    env.ultralytics_env()
    from ultralytics import settings

    wanted = {"datasets_dir": str(env.artifacts_dir() / "data"),
              "weights_dir": str(env.artifacts_dir() / "weights"),
              "runs_dir": str(env.artifacts_dir() / "runs"), "sync": False}
    wanted.update({k: False for k in ("mlflow", "tensorboard", "wandb", "clearml", "comet",
                                      "dvc", "raytune", "hub", "neptune") if k in settings})
    if any(settings.get(k) != v for k, v in wanted.items()):
        settings.update(wanted)
    import torch
    import ultralytics.nn.backends.litert  # noqa: F401  (set_threads patches their NUM_THREADS)
    import ultralytics.utils.torch_utils  # noqa: F401

    env.set_threads(torch.get_num_threads())  # stop ultralytics from resetting the thread count


def predict_classes(model_or_backend, x, batch: int = 256) -> np.ndarray:
    """Arg-max predictions of a torch module or a :class:`common.backends.Backend`."""
    import torch

    preds = []
    if isinstance(model_or_backend, torch.nn.Module):
        was_training = model_or_backend.training
        model_or_backend.eval()
        dev = next(model_or_backend.parameters()).device   # the images go where the model is
        with torch.inference_mode():
            for i in range(0, len(x), batch):
                xb = x[i:i + batch].to(dev)
                if xb.dim() == 4:  # channels-last: the same convolutions on oneDNN's faster path (~1.3x here)
                    xb = xb.contiguous(memory_format=torch.channels_last)
                preds.append(model_or_backend(xb).argmax(1).cpu().numpy())
        model_or_backend.train(was_training)
    else:
        xs = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
        for i in range(0, len(xs), batch):
            preds.append(model_or_backend(xs[i:i + batch]).argmax(1))
    return np.concatenate(preds)


def ultralytics_device() -> str:
    """:func:`common.env.compute_device` as ultralytics spells it ("cpu", or "0" for the first GPU)."""
    return "0" if env.compute_device() == "cuda" else "cpu"
