"""Code-level faults planted with monkeypatch: each must make the unit test that guards its path
fail, in seconds. A test that still passed with the fault in would guard nothing.

- the from-scratch quantizer with its scale doubled (checked against PyTorch's quantized tensors),
- a pruning mask that keeps the smallest weights instead of the largest (against
  ``torch.nn.utils.prune``),
- the KD loss with the temperature dropped (against the written-out numpy reference),
- the fine-tune made to do nothing (its learning rate 1e-12, as in the maintainer's experiment):
  :func:`check_finetune_recovers` on a small classifier whose head was re-initialised.
"""

import dataclasses
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from common import data, distill, pruning, quantize, train, workloads

HERE = Path(__file__).resolve().parent


def _tests(name: str):
    """Another test module of this folder, imported by path (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_faults_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ the fine-tune must learn

def _small_classifier(seed: int = 0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 10))


@pytest.fixture(scope="module")
def tiny_baseline():
    d = data.load_classification("digits", img_size=8)
    bl = SimpleNamespace(config=SimpleNamespace(workload="resnet18", lr=0.1, batch=32), data=d)
    model = _small_classifier()
    train.fit_classifier(model, d, epochs=4, lr=0.1, batch=32, progress=False)
    return bl, model


def check_finetune_recovers(bl, trained) -> None:
    """A trained model whose head was re-initialised must get most of its accuracy back from
    :func:`common.train.finetune` with the baseline's recipe (2 epochs)."""
    import copy

    trained_acc = workloads.evaluate_classifier(trained, bl.data)["accuracy"]
    model = copy.deepcopy(trained)
    torch.manual_seed(1)
    model[-1].reset_parameters()
    broken = workloads.evaluate_classifier(model, bl.data)["accuracy"]
    train.finetune(bl, model, epochs=2, lr=0.05, progress=False)
    after = workloads.evaluate_classifier(model, bl.data)["accuracy"]
    assert trained_acc > 0.6, f"the tiny model did not train ({trained_acc:.3f})"
    assert after >= max(broken + 0.3, trained_acc - 0.15), \
        f"the fine-tune did not recover: {broken:.3f} -> {after:.3f} (trained {trained_acc:.3f})"


def test_the_fine_tune_recovers_a_broken_head(tiny_baseline):
    check_finetune_recovers(*tiny_baseline)


def test_a_fine_tune_that_does_nothing_fails_the_check(tiny_baseline, monkeypatch):
    real = train.fit_classifier
    monkeypatch.setattr(train, "fit_classifier", lambda *a, **k: real(*a, **{**k, "lr": 1e-12}))
    with pytest.raises(AssertionError, match="did not recover"):
        check_finetune_recovers(*tiny_baseline)


# ------------------------------------------------------------------ from-scratch paths

def test_a_doubled_quantization_scale_fails_the_check_against_torch(monkeypatch):
    tq = _tests("test_quantize")
    real = quantize.quantize_tensor

    def doubled(w, *args, **kwargs):
        qt = real(w, *args, **kwargs)
        scale = qt.scale * 2
        wn = np.asarray(w.detach().numpy() if hasattr(w, "detach") else w, dtype=np.float64)
        lo, hi = quantize.qrange(qt.bits, qt.symmetric)
        q = np.clip(np.round(wn / qt._b(scale)) + qt._b(qt.zero_point), lo, hi).astype(qt.q.dtype)
        return dataclasses.replace(qt, q=q, scale=scale)

    weight = _weight()
    tq.test_per_channel_symmetric_int8_matches_torch_exactly(weight)      # passes as written
    monkeypatch.setattr(quantize, "quantize_tensor", doubled)
    with pytest.raises(AssertionError):
        tq.test_per_channel_symmetric_int8_matches_torch_exactly(weight)


def _weight():
    torch.manual_seed(0)
    return torch.nn.Conv2d(8, 16, 3).weight.detach() * torch.linspace(0.1, 3, 16)[:, None, None, None]


def test_a_mask_that_keeps_the_smallest_weights_fails_the_check_against_the_library(monkeypatch):
    tp = _tests("test_pruning")
    tp.test_local_mask_equals_the_library(0.5)                            # passes as written
    real = pruning.magnitude_mask
    monkeypatch.setattr(pruning, "magnitude_mask", lambda w, s: 1 - real(-w.abs(), s) if s else real(w, s))
    with pytest.raises(AssertionError):
        tp.test_local_mask_equals_the_library(0.5)


def test_a_kd_loss_without_its_temperature_fails_the_check_against_the_reference(monkeypatch):
    td = _tests("test_distill")
    td.test_kd_loss_matches_the_written_out_reference(4.0, 0.9)           # passes as written
    real = distill.kd_loss
    monkeypatch.setattr(distill, "kd_loss", lambda zs, zt, y, t=4.0, alpha=0.9, **k: real(zs, zt, y, 1.0, alpha, **k))
    with pytest.raises(AssertionError):
        td.test_kd_loss_matches_the_written_out_reference(4.0, 0.9)
