"""Training loops (common.train): a classifier learns and scores the same exported; the detector's
own fine-tune loop keeps ultralytics' frozen DFL projection; the module imports on its own."""

import subprocess
import sys

import pytest
import torch

from common import data, train, workloads


def test_fine_tuning_learns_and_exported_model_scores_the_same(tmp_path):
    torch.manual_seed(0)
    d = data.load_classification("digits", img_size=8)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64, 10))
    before = workloads.evaluate_classifier(model, d)["accuracy"]
    hist = train.fit_classifier(model, d, epochs=3, lr=0.05, batch=32, progress=False)
    after = workloads.evaluate_classifier(model, d)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert after["accuracy"] > max(0.7, before + 0.3)
    torch.onnx.export(model, (d.x_test[:1],), str(tmp_path / "m.onnx"), input_names=["x"],
                      dynamic_axes={"x": {0: "b"}}, dynamo=False)
    assert workloads.evaluate_classifier(tmp_path / "m.onnx", d) == pytest.approx(after, abs=1e-9)
    with pytest.raises(ValueError, match="epochs >= 1"):
        train.fit_classifier(model, d, epochs=0, lr=0.1)


def test_detector_fine_tune_trains_the_model_but_never_the_dfl_projection():
    """finetune_detector freezes '.dfl' like ultralytics' trainer: its 0..15 weights are fixed."""
    import copy

    bl = workloads.baseline("yolov8n")
    m = copy.deepcopy(bl.model)
    train.finetune_detector(m, bl, epochs=0.05, progress=False)  # two optimizer steps
    dfl = {n: p for n, p in m.named_parameters() if ".dfl" in n}
    assert dfl and all(torch.equal(p, dict(bl.model.named_parameters())[n]) for n, p in dfl.items())
    assert all(not p.requires_grad for p in dfl.values())
    assert not torch.equal(m.model[0].conv.weight, bl.model.model[0].conv.weight)


def test_train_and_workloads_import_in_either_order():
    """train imports workloads and workloads.baseline imports train: neither order may fail."""
    for first, second in (("train", "workloads"), ("workloads", "train")):
        code = (f"from common import {first}; from common import {second}; "
                "assert callable(train.fit_classifier) and callable(workloads.baseline)")
        subprocess.run([sys.executable, "-c", code], check=True, cwd=workloads.env.REPO_ROOT)
