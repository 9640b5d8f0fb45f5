from pathlib import Path

import numpy as np
import pytest
import torch

from common import data, train, workloads
from common.workloads import TrainConfig


def test_resnet18_has_a_cifar_stem():
    m = workloads.build_resnet18(10).eval()
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert isinstance(m.maxpool, torch.nn.Identity)
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert 11.1e6 < sum(p.numel() for p in m.parameters()) < 11.2e6


@pytest.mark.parametrize("kwargs, message", [
    (dict(workload="bert"), "valid workloads"),
    (dict(epochs=0), "epochs >= 1"),
    (dict(workload="yolov8n", weights="yolov9.pt"), "unknown yolov8n weights"),
    (dict(weights="yolov8n.pt"), "from scratch"),
])
def test_bad_training_configs(kwargs, message):
    base = dict(workload="resnet18", dataset="digits", img_size=32, epochs=1, batch=8, lr=0.1)
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**base, **kwargs})


def test_cache_key_depends_on_every_field():
    a = TrainConfig("resnet18", "digits", 32, 4, 64, 0.05)
    assert a.key() == TrainConfig("resnet18", "digits", 32, 4, 64, 0.05).key()
    assert a.key() != TrainConfig("resnet18", "digits", 32, 4, 64, 0.06).key()
    assert a.key().startswith("resnet18-digits-32px-e4-s0-")


def test_bad_baseline_requests_fail_before_any_work(monkeypatch):
    monkeypatch.setenv("NNC_OFFLINE", "1")
    with pytest.raises(ValueError, match="unknown training options"):
        workloads.baseline("resnet18", epoch=3)
    with pytest.raises(data.DatasetError, match="use the built-in 'digits' or the default 'fashion-mnist-small'"):
        workloads.baseline("resnet18", "cifar10")
    with pytest.raises(data.DatasetError, match="offline; use weights='scratch'"):
        workloads.baseline("yolov8n", weights="yolov8n.pt")


def test_detector_scores_the_same_as_a_module_and_as_exported_models(tmp_path):
    """evaluate() takes the torch module or any exported artifact; fp32 exports agree."""
    import shutil

    from common import backends

    # The hw1 baseline, trained (if missing) in a fresh process like a notebook kernel: training
    # in this pytest process, after the other tests' exports, gave different weights once.
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", "from common import workloads; workloads.baseline('yolov8n')"],
                   check=True, cwd=workloads.env.REPO_ROOT)
    bl = workloads.baseline("yolov8n")
    assert bl.cached
    ckpt = tmp_path / "baseline.pt"     # exports land beside the checkpoint: keep them out of the cache
    shutil.copy2(bl.ultralytics_checkpoint, ckpt)
    y = workloads.yolo(ckpt)
    ref = workloads.evaluate(bl)
    assert ref["map50"] > 0.5
    x = np.random.default_rng(0).standard_normal(bl.input_shape).astype(np.float32)
    expected = backends.load(bl.model, threads=2)(x)
    for fmt in ("onnx", "openvino", "torchscript"):
        path = y.export(format=fmt, imgsz=bl.config.img_size, device="cpu")
        artifact = next(Path(path).glob("*.xml")) if fmt == "openvino" else path
        np.testing.assert_allclose(backends.load(artifact, threads=2)(x), expected, atol=2e-3, rtol=0)
        got = workloads.evaluate(bl, path)
        # ultralytics runs OpenVINO at the CPU's default precision, bf16 on AVX512-BF16 CPUs
        tolerance = 1e-2 if fmt == "openvino" else 1e-4
        for k in ref:
            assert got[k] == pytest.approx(ref[k], abs=tolerance), (fmt, k)


def test_a_fresh_clone_reuses_a_baseline_trained_on_this_machine_with_the_same_code(tmp_path, monkeypatch):
    import torch

    from common import env, workloads

    calls = []

    def fake_fit(model, data, **kw):            # stands in for training: a deterministic weight change
        calls.append(kw["epochs"])
        with torch.no_grad():
            model.fc.bias.fill_(0.5)
        return [{"epoch": 1, "loss": 1.0, "val_accuracy": 0.5}]

    monkeypatch.setattr(train, "fit_classifier", fake_fit)
    monkeypatch.setenv("NNC_SHARED_CACHE", str(tmp_path / "shared"))
    monkeypatch.setenv("NNC_ARTIFACTS", str(tmp_path / "clone1"))
    first = workloads.baseline("resnet18", "digits", epochs=1, lr=0.01)
    assert not first.cached and calls == [1]
    shared = workloads._shared_baseline(first.config)
    assert shared.parent == tmp_path / "shared" / "baselines" and (shared / "model.pt").exists()
    assert [p.name for p in shared.parent.iterdir()] == [shared.name]          # no temporary copies left

    monkeypatch.setenv("NNC_ARTIFACTS", str(tmp_path / "clone2"))           # another clone, same machine
    second = workloads.baseline("resnet18", "digits", epochs=1, lr=0.01)
    assert second.cached and calls == [1] and torch.equal(second.model.fc.bias, first.model.fc.bias)
    assert (tmp_path / "clone2" / "baselines" / first.config.key() / "meta.json").exists()

    monkeypatch.setattr(workloads, "training_fingerprint", lambda: "changedcode0")
    monkeypatch.setenv("NNC_ARTIFACTS", str(tmp_path / "clone3"))           # the training code changed
    assert not workloads.baseline("resnet18", "digits", epochs=1, lr=0.01).cached and calls == [1, 1]

    monkeypatch.setenv("NNC_SHARED_CACHE", "")                               # turned off
    monkeypatch.setenv("NNC_ARTIFACTS", str(tmp_path / "clone4"))
    assert env.shared_cache_dir() is None
    assert not workloads.baseline("resnet18", "digits", epochs=1, lr=0.01).cached and calls == [1, 1, 1]


def test_a_baseline_trains_with_the_same_threads_whoever_trains_it(tmp_path, monkeypatch):
    import torch

    from common import env, workloads

    seen = []
    monkeypatch.setattr(train, "fit_classifier", lambda model, data, **kw: seen.append(torch.get_num_threads()) or [])
    monkeypatch.setenv("NNC_SHARED_CACHE", "")
    monkeypatch.setenv("NNC_ARTIFACTS", str(tmp_path))
    before = torch.get_num_threads()
    try:
        env.set_threads(1)                     # e.g. what ultralytics leaves behind on a 2-core machine
        workloads.baseline("resnet18", "digits", epochs=1, lr=0.02)
        assert seen == [workloads.TRAIN_THREADS] and torch.get_num_threads() == 1   # restored afterwards
    finally:
        env.set_threads(before)


def test_a_gpu_trained_baseline_never_shares_the_cpu_cache_entry(monkeypatch):
    from common import env

    cfg = workloads.TrainConfig(workload="resnet18", dataset="digits", img_size=32, epochs=4, batch=64, lr=0.05)
    monkeypatch.setattr(env, "_compute_device", "cpu")
    assert workloads.device_key(cfg) == cfg.key() and workloads.ultralytics_device() == "cpu"
    monkeypatch.setattr(env, "_compute_device", "cuda")   # what DEVICE="cuda" sets (no GPU needed to name it)
    assert workloads.device_key(cfg) == cfg.key() + "-cuda" and workloads.ultralytics_device() == "0"
