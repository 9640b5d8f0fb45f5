"""Pruning: from-scratch masks against torch.nn.utils.prune, sparse storage round trip,
structured pruning that really removes channels, BN recalibration, and bad input."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.utils.prune as prune

from common import pruning, pruning_runs, size, train, workloads


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()


@pytest.mark.parametrize("s", [0.0, 0.1, 0.5, 0.93])
def test_local_mask_equals_the_library(s):
    w = torch.randn(16, 8, 3, 3)
    conv = nn.Conv2d(8, 16, 3)
    conv.weight.data = w.clone()
    lib = prune.l1_unstructured(conv, "weight", amount=s).weight_mask
    ours = pruning.magnitude_mask(w, s)
    assert torch.equal(ours, lib)
    assert int((ours == 0).sum()) == round(s * w.numel())


def test_global_masks_equal_the_library_and_differ_per_layer():
    model = small_cnn()
    model[3].weight.data *= 0.1  # a layer of small weights loses more under one global threshold
    weights = {n: m.weight for n, m in pruning.prunable_layers(model).items()}
    ours = pruning.global_magnitude_masks(weights, 0.5)
    pruned = pruning.prune_unstructured(model, 0.5, "global")
    lib = pruning.masks(pruned)
    assert set(lib) == set(ours) and all(torch.equal(ours[n], lib[n]) for n in lib)
    assert 1 - lib["3"].mean() > 0.5 > 1 - lib["0"].mean()
    assert size.sparsity(pruning.finalized(pruned)) == pytest.approx(0.5, abs=1e-3)
    assert size.sparsity(model) == 0  # the original is untouched


def test_masks_survive_training_and_finalize_makes_them_permanent():
    model = pruning.prune_unstructured(small_cnn(), 0.6, "local")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(3):
        loss = model(torch.randn(4, 3, 8, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    fin = pruning.finalized(model)  # works on a model whose weights still hold a graph
    assert not pruning.masks(fin) and pruning.masks(model)
    for name, m in pruning.prunable_layers(fin).items():
        assert float((m.weight == 0).float().mean()) == pytest.approx(0.6, abs=0.02), name


def test_sparse_encoding_round_trips_and_is_smaller(tmp_path):
    model = pruning.finalized(pruning.prune_unstructured(small_cnn(), 0.9, "global"))
    path = pruning.save_sparse(model, tmp_path / "m.npz")
    back = pruning.load_sparse(small_cnn(), path)
    assert pruning.identical(model, back)
    assert not pruning.identical(small_cnn(), back)
    parts = pruning.sparse_stats(path)
    n = sum(m.weight.numel() for m in pruning.prunable_layers(model).values())
    nonzero = sum(int((m.weight != 0).sum()) for m in pruning.prunable_layers(model).values())
    headers = 128 * len(pruning.prunable_layers(model))  # one .npy header per array
    assert 4 * nonzero <= parts["values"] <= 4 * nonzero + headers
    bits = sum((m.weight.numel() + 7) // 8 for m in pruning.prunable_layers(model).values())
    assert bits <= parts["mask"] <= bits + headers
    assert parts["values"] + parts["mask"] < 4 * n * (0.1 + 1 / 32) + 4 * headers
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("criterion", pruning.CRITERIA)
def test_structured_pruning_removes_channels_and_reloads_smaller(criterion, tmp_path):
    model = workloads.build_resnet18(10).eval()
    x = torch.randn(2, 3, 32, 32)
    pruned = pruning.prune_channels(model, x[:1], 0.5, criterion)
    assert pruned.fc.out_features == 10 and pruned.conv1.out_channels == 32
    assert size.count_params(pruned) < 0.3 * size.count_params(model)
    assert size.gflops(pruned, (1, 3, 32, 32)) < 0.3 * size.gflops(model, (1, 3, 32, 32))
    path = pruning.save_module(pruned, tmp_path / "p.pt")
    back = torch.load(path, weights_only=False).eval()
    with torch.no_grad():
        assert torch.equal(back(x), pruned(x))


def test_yolo_c2f_split_is_exact_and_prunes(tmp_path):
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=3, verbose=False).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(pruning.split_c2f(model)(x)[0], model(x)[0])
        pruned = pruning.prune_channels(model, x, 0.3, "l1")  # turns autograd on to trace
        out = pruned(x)[0]
    assert out.shape == model(x)[0].shape  # the head's output format is kept
    assert size.count_params(pruned) < 0.6 * size.count_params(model)
    path = pruning.save_module(pruned, tmp_path / "y.pt")
    back = torch.load(path, weights_only=False).eval()  # C2fSplit is importable by name
    with torch.no_grad():
        assert torch.equal(back(x)[0], out)


def test_recalibrate_bn_restores_statistics():
    model = small_cnn()
    x = torch.randn(64, 3, 8, 8) * 3 + 1
    ref = copy.deepcopy(model)
    train.recalibrate_bn(model, x, batch=16)
    bn = model[1]
    feats = ref[0](x)
    assert torch.allclose(bn.running_mean, feats.mean((0, 2, 3)), atol=1e-4)
    assert bn.momentum == 0.1 and not model.training  # settings restored


@pytest.mark.parametrize("call, message", [
    (lambda m: pruning.prune_unstructured(m, 1.0), "in \\[0, 1\\)"),
    (lambda m: pruning.prune_unstructured(m, -0.1), "in \\[0, 1\\)"),
    (lambda m: pruning.prune_unstructured(m, "half"), "number in \\[0, 1\\)"),
    (lambda m: pruning.prune_unstructured(m, 0.5, "layerwise"), "global, local"),
    (lambda m: pruning.prune_unstructured(m, 0.5, "local", layers={"nope": 0.5}), "no prunable"),
    (lambda m: pruning.prune_channels(m, torch.zeros(1, 3, 8, 8), 0.5, "l3"), "l1, l2, fpgm"),
    (lambda m: pruning.prune_channels(m, torch.zeros(1, 3, 8, 8), 1.5, "l1"), "channel pruning ratio"),
])
def test_bad_input_is_refused_before_any_work(call, message):
    with pytest.raises(pruning.PruningError, match=message):
        call(small_cnn())


def test_the_dfl_projection_is_fixed_for_pruning_and_clustering():
    """common.layers is the one definition: YOLO's DFL projection (weights 0..15) is never compressed."""
    from ultralytics.nn.tasks import DetectionModel

    from common import cluster, layers

    model = DetectionModel("yolov8n.yaml", nc=3, verbose=False).eval()
    assert layers.fixed_layers(model) == ["model.22.dfl.conv"]
    assert layers.is_fixed("model.22.dfl.conv") and not layers.is_fixed("model.22.cv2.0.2")
    assert layers.is_fixed_onnx_node("/model.22/dfl/conv/Conv") and not layers.is_fixed_onnx_node("/model.22/cv2.0/Conv")
    for chosen in (pruning.prunable_layers(model), cluster.clusterable_layers(model)):
        assert "model.22.dfl.conv" not in chosen and "model.22.cv2.0.2" in chosen
    dfl = model.model[22].dfl.conv.weight.clone()
    for scope in ("local", "global"):
        pruned = pruning.finalized(pruning.prune_unstructured(model, 0.3, scope))
        assert torch.equal(pruned.model[22].dfl.conv.weight, dfl)
    with pytest.raises(pruning.PruningError, match="fixed"):
        pruning.prune_unstructured(model, 0, "local", layers={"model.22.dfl.conv": 0.5})
    groups = pruning.sensitivity_groups(model, "yolov8n")
    assert list(groups)[:2] == ["block 00", "block 01"] and all("dfl" not in n for g in groups.values() for n in g)
    assert pruning.sensitivity_groups(small_cnn(), "resnet18") == {n: [n] for n in pruning.prunable_layers(small_cnn())}


def test_sensitivity_plan_keeps_sensitive_groups_and_reaches_the_overall_sparsity():
    groups = {"a": ["a"], "b": ["b"], "c": ["c1", "c2"]}
    numel = {"a": 100, "b": 100, "c1": 100, "c2": 100}
    drops = {"a": 0.1, "b": 0.02, "c": 0.0}          # relative to a reference of 1.0
    plan = pruning.sensitivity_plan(drops, 1.0, groups, numel, 0.5)
    assert plan == {"a": 0.3, "b": 0.5, "c1": 0.6, "c2": 0.6}
    assert sum(plan[n] * numel[n] for n in plan) / sum(numel.values()) == pytest.approx(0.5)
    capped = pruning.sensitivity_plan({"a": 0.1, "b": 0.1, "c": 0.0}, 1.0, groups, numel, 0.9)
    assert capped["c1"] == 0.95                       # cannot reach 0.9 overall: capped, not invented
    assert pruning.sensitivity_plan({"a": 0, "b": 0, "c": 0}, 1.0, groups, numel, 0.7) == dict.fromkeys(numel, 0.7)
    with pytest.raises(pruning.PruningError):
        pruning.sensitivity_plan(drops, 1.0, groups, numel, 1.5)


def test_pruned_detector_fine_tune_starts_from_re_estimated_batchnorm(monkeypatch):
    """pruning_runs.finetune re-estimates the detector's BN statistics before train.finetune runs
    (the classifier's train.finetune does it itself, so they are left to it)."""
    import copy

    seen = {}
    monkeypatch.setattr(train, "finetune", lambda bl, m, **kw: seen.setdefault(
        bl.config.workload, {n: b.clone() for n, b in m.named_buffers() if n.endswith("running_mean")}) and [])
    bl = workloads.baseline("yolov8n")
    x = torch.as_tensor(workloads.sample_inputs(bl, 8, "train", seed=0))
    m = copy.deepcopy(bl.model)
    pruning_runs.finetune(bl, m, x_bn=x, epochs=0.5)
    ref = train.recalibrate_bn(copy.deepcopy(bl.model), x)
    expected = {n: b for n, b in ref.named_buffers() if n.endswith("running_mean")}
    assert seen["yolov8n"].keys() == expected.keys()
    assert all(torch.allclose(seen["yolov8n"][n], expected[n]) for n in expected)
    assert not all(torch.equal(seen["yolov8n"][n], b) for n, b in bl.model.named_buffers() if n in expected)


def test_sensitivity_scan_scores_each_group_on_validation():
    """A group pruned to sparsity 0 loses nothing; the reference is the unpruned val score of the same images."""
    bl = workloads.baseline("resnet18")
    groups = dict(list(pruning.sensitivity_groups(bl.model, "resnet18").items())[:2])
    ref, drops = pruning_runs.sensitivity_scan(bl, groups, 0.0, "accuracy", images=40, seed=0)
    assert drops == dict.fromkeys(groups, 0.0) and 0.0 < ref <= 1.0
    ref2, hard = pruning_runs.sensitivity_scan(bl, {"conv1": ["conv1"]}, 0.95, "accuracy", images=40, seed=0)
    assert ref2 == ref and hard["conv1"] > 0      # the stem at 95 % sparsity costs accuracy
    with pytest.raises(pruning.PruningError):
        pruning_runs.sensitivity_scan(bl, groups, 1.5, "accuracy")
