"""hw3's experiment functions (common.pruning_runs), run for real on a tiny classifier of 8x8
digits: every function's shape of results and the checks it makes; timings are not compared."""

import pytest
import torch

from common import data, pruning, pruning_runs, size, workloads


@pytest.fixture(scope="module")
def bl(tmp_path_factory):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
    cfg = workloads.TrainConfig("resnet18", "digits", img_size=8, epochs=1, batch=32, lr=0.05)
    path = pruning.save_module(model, tmp_path_factory.mktemp("base") / "model.pt")
    return workloads.Baseline(cfg, model, path, data.load_classification("digits", img_size=8), 0.0)


def test_the_unstructured_sweep_scores_both_scopes_and_keeps_the_fine_tuned_zeros(bl):
    scores, masked = pruning_runs.unstructured_sweep(bl, [0.5, 0.9], seed=0, images=64)
    assert set(scores) == {(sc, s, ft) for s in (0.5, 0.9) for sc, ft in (("local", False), ("global", False), ("global", True))} | {
        pruning_runs.CONTROL}
    assert scores[pruning_runs.CONTROL]["sparsity"] < 0.01                     # the control: fine-tuned, nothing pruned
    for (scope, s, ft), r in scores.items():
        assert abs(r["sparsity"] - s) < 1e-2 and 0 <= r["accuracy"] <= 1
    assert set(masked) == {0.5, 0.9} and abs(size.sparsity(pruning.finalized(masked[0.9])) - 0.9) < 1e-2


def test_sparse_files_shrink_under_gzip_and_bitmask_but_not_dense(bl, tmp_path):
    _, masked = pruning_runs.unstructured_sweep(bl, [0.9], seed=0, images=64)
    files, timed = pruning_runs.sparse_files(bl, masked, tmp_path, reference="base", threads=1, rounds=2)
    assert set(files) == {0.0, 0.9} and set(timed.speeds) == {"base", "0.00", "0.90"}
    assert files[0.9]["dense"] == pytest.approx(files[0.0]["dense"], rel=0.05)      # zeros are still stored
    assert files[0.9]["sparse"] < files[0.0]["sparse"] and files[0.9]["gzip"] < files[0.0]["gzip"]


def test_nonuniform_and_global_meet_at_one_sparsity_over_the_seeds(bl):
    names = list(pruning.prunable_layers(bl.model))
    plan = {n: (0.3 if i == 0 else 0.8) for i, n in enumerate(names)}
    got = pruning_runs.nonuniform_vs_global(bl, plan, [0, 1], seed=0, metric="accuracy", images=64)
    assert [len(v) for v in got["per_seed"].values()] == [2, 2]
    assert got["per_seed"]["global"][0] == got["global"]["accuracy"]
    assert got["non-uniform"]["sparsity"] == pytest.approx(got["global"]["sparsity"], abs=2e-3)
    assert {got["verdict"].name_a, got["verdict"].name_b} == {"non-uniform", "global"}


def test_the_structured_grid_scores_as_cut_bn_and_fine_tuned_models(bl, tmp_path):
    cut = pruning.prune_channels(bl.model, torch.zeros(bl.input_shape), 0.5, "l1")
    grid, timed = pruning_runs.structured_grid(bl, {("l1", 0.5): cut}, tmp_path, seed=0, epochs=1, reference="base",
                                              threads=1, bn_images=64)
    z = grid["l1", 0.5]
    assert set(z) == {"before", "bn", "after", "figures", "m", "variant"} and set(timed.speeds) == {"base", "l1 0.50"}
    assert z["figures"]["params"] == size.count_params(cut) < size.count_params(bl.model)
    assert z["variant"].path.exists() and size.count_params(torch.load(z["variant"].path, weights_only=False)) == z["figures"]["params"]


def test_the_structured_control_is_the_grid_fine_tune_with_nothing_pruned(bl, tmp_path):
    """The control gets exactly the grid's fine-tune: an unpruned copy run through the grid scores the same."""
    import copy

    before = copy.deepcopy(bl.model)
    ctrl = pruning_runs.structured_control(bl, seed=0, epochs=1, bn_images=64)
    grid, _ = pruning_runs.structured_grid(bl, {("none", 0.0): copy.deepcopy(bl.model)}, tmp_path, seed=0, epochs=1,
                                           reference="base", threads=1, bn_images=64)
    assert ctrl == grid["none", 0.0]["after"] and 0 <= ctrl["accuracy"] <= 1
    assert pruning.identical(before, bl.model)                                  # the baseline itself is not trained
    assert ctrl != pruning_runs.structured_control(bl, seed=1, epochs=1, bn_images=64)   # the seed drives the fine-tune


def test_the_final_pruned_model_reloads_exports_and_is_timed_against_the_baseline(bl, tmp_path):
    """hw3's last step for real: prune, fine-tune, save, export to ONNX and OpenVINO, check parity
    and quality, measure, time against the baseline and its ONNX export in one run."""
    got = pruning_runs.final_model(bl, tmp_path, ratio=0.5, criterion="l1", epochs=1, seed=0,
                                   metric="accuracy", reference="base", threads=1, warmup=1, repeats=2)
    assert got["params"] == size.count_params(got["variant"].model) < size.count_params(bl.model)
    assert set(got["runs"]) == {"pytorch", "onnx", "openvino"}
    for r in got["runs"].values():
        assert r["diff"] <= 1e-3 and abs(r["quality"]["accuracy"] - got["runs"]["pytorch"]["quality"]["accuracy"]) < 2e-3
        assert r["m"].row()["size_mb"] > 0
    assert set(got["speed"].speeds) == {"base", "baseline onnx", "pytorch", "onnx", "openvino"}


def test_the_dense_smaller_control_trains_once_per_machine_then_comes_from_the_cache(bl, tmp_path, monkeypatch):
    monkeypatch.setenv("NNC_SHARED_CACHE", str(tmp_path / "cache"))
    first = pruning_runs.dense_smaller(bl, 4, 1, [0, 1])
    again = pruning_runs.dense_smaller(bl, 4, 1, [0, 1])
    assert [r["cached"] for r in first.values()] == [False, False] and [r["cached"] for r in again.values()] == [True, True]
    assert pruning.identical(first[1]["model"], again[1]["model"]) and first[1]["quality"] == again[1]["quality"]
    assert not pruning.identical(first[0]["model"], first[1]["model"])            # each seed its own model
    assert first[0]["model"].conv1.out_channels == 4 and len(list((tmp_path / "cache" / "dense-smaller").glob("*.pt"))) == 2
    for width, epochs in ((64, 1), (0, 1), (4, 0)):
        with pytest.raises(ValueError, match="need 1 <= width < 64"):
            pruning_runs.dense_smaller(bl, width, epochs, [0])
