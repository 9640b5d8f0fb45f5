"""The row builder, the measured-rows helper and the experiment functions hw4 and hw6 call
(tiny models; timings are not checked, only that every column comes back)."""

from types import SimpleNamespace

import pytest

from common import cluster_runs, distill_runs, record, registry, seeds


def test_a_row_keeps_the_schemas_columns_and_joins_its_notes():
    q = {"accuracy": 0.5, "f1": 0.4, "confusion": [[1]]}          # metrics dicts carry more than the schema
    r = registry.row("hw4", "resnet18", "digits", "x", "a method", q, {"size_mb": 1.0, "notes": "measured"},
                     params=10, notes="first")
    assert r == {"homework": "hw4", "workload": "resnet18", "dataset": "digits", "name": "x", "method": "a method",
                 "accuracy": 0.5, "f1": 0.4, "size_mb": 1.0, "params": 10, "notes": "first; measured"}
    assert "notes" not in registry.row("hw4", "resnet18", "digits", "x", "m", notes=["", ""])
    with pytest.raises(registry.RegistryError, match="unknown homework"):
        registry.row("hw9", "resnet18", "digits", "x", "m")
    with pytest.raises(registry.RegistryError, match="unknown columns"):
        registry.row("hw4", "resnet18", "digits", "x", "m", latency=1.0)


def test_a_verdict_sentence_names_a_winner_only_outside_the_spread():
    apart = seeds.paired_verdict("KD", [0.70, 0.71, 0.72], "scratch", [0.60, 0.62, 0.61])
    assert apart.sentence(100, "+.2f", " pt").startswith("**+10.00 pt**: KD is better on every one of the 3 paired seeds")
    mixed = seeds.paired_verdict("KD", [0.70, 0.60, 0.65], "scratch", [0.65, 0.65, 0.65])
    assert "no winner on this evidence" in mixed.sentence() and "change sign" in mixed.sentence()
    overlap = seeds.verdict("a", [0.5, 0.7], "b", [0.6, 0.65])
    assert overlap.sentence() == "**-0.0250**, within the seed spread (0.2000): no winner on this evidence"


def _tiny(tmp_path, name, width):
    import torch

    from common.pruning import save_module

    net = torch.nn.Sequential(torch.nn.Conv2d(3, width, 3), torch.nn.ReLU(), torch.nn.Flatten()).eval()
    return record.Model(SimpleNamespace(path=save_module(net, tmp_path / name / "model.pt")), net,
                        {"accuracy": 0.5}, f"width {width}")


def test_measured_rows_measure_time_and_record_every_model(tmp_path, monkeypatch):
    monkeypatch.setenv("NNC_QUICK_TIMING", "1")
    bl = SimpleNamespace(config=SimpleNamespace(workload="resnet18", dataset="digits"), input_shape=(1, 3, 8, 8))
    models = {"teacher": _tiny(tmp_path, "t", 8), "student": _tiny(tmp_path, "s", 2)}
    rows, measured, timed = record.measured_rows("hw6", bl, models, "teacher", ram=set(), threads=1,
                                                 notes={"student": "chosen on val"})
    assert [r["name"] for r in rows] == ["teacher", "student"] and set(measured) == set(models)
    assert rows[1]["params"] < rows[0]["params"] and rows[1]["speedup_vs"] == "teacher"
    assert rows[1]["notes"].startswith("chosen on val; ") and "ram: not measured" in rows[1]["notes"]
    assert all(registry.normalize(r) for r in rows)
    with pytest.raises(ValueError, match="the reference 'baseline' is not one of the models: teacher, student"):
        record.measured_rows("hw6", bl, models, "baseline")


def test_the_twin_methods_say_what_each_file_is():
    assert cluster_runs.twin_method("baseline") == "Keras twin, TFLite float32"
    assert cluster_runs.twin_method("tfmot linear 16") == "TFMOT cluster_weights linear 16 clusters + strip, TFLite float32"
    assert cluster_runs.twin_method("tfmot kmeans++ 8 int8").endswith("8 clusters + strip, TFLite int8 PTQ")
    assert "cluster-preserving QAT" in cluster_runs.twin_method("tfmot 16 cqat int8")


def test_detector_students_choose_the_weight_on_val_then_pair_every_seed(tmp_path, monkeypatch):
    from common import distill, train, workloads

    calls = []

    def fake_fit(y, data, *, seed, trainer=None, **kw):
        calls.append((seed, None if trainer is None else trainer[1]["weight"], kw["epochs"]))
        return [{"epoch": 1}], (seed, None if trainer is None else trainer[1]["weight"])

    def fake_evaluate(v, split="test"):   # val prefers weight 1, test would prefer weight 4
        seed, w = v.model
        score = {None: 0.30, 1.0: 0.40, 4.0: 0.35}[w] if split == "val" else {None: 0.3, 1.0: 0.2, 4.0: 0.5}[w]
        return {"map50_95": score + seed / 100}

    monkeypatch.setattr(train, "fit_detector", fake_fit)
    monkeypatch.setattr(workloads, "yolo", lambda yaml: yaml)
    monkeypatch.setattr(distill, "distillation_trainer", lambda teacher, **kw: ("trainer", kw))
    monkeypatch.setattr(distill, "plain_student", lambda m: m)
    monkeypatch.setattr(workloads, "variant", lambda td, m, out: SimpleNamespace(model=m, out=out))
    monkeypatch.setattr(workloads, "evaluate", fake_evaluate)
    td = SimpleNamespace(model="teacher", data="d.yaml", config=SimpleNamespace(img_size=64, batch=4, lr=0.01))
    res = distill_runs.detector_students(td, "student.yaml", [0, 1, 2], tmp_path, epochs=3, weights=[4.0, 1.0],
                                         box_ratio=0.1, temperature=2.0)
    assert calls == [(0, None, 3), (0, 4.0, 3), (0, 1.0, 3), (1, None, 3), (1, 1.0, 3), (2, None, 3), (2, 1.0, 3)]
    assert res["weight"] == 1.0 and list(res["sweep"]["weight"]) == [4.0, 1.0]
    assert list(res["sweep"].columns) == ["weight", "val map50_95"]           # the sweep shows no test score
    assert sorted(res["runs"]["kd"]) == sorted(res["runs"]["scratch"]) == [0, 1, 2]
    assert res["runs"]["kd"][0]["quality"]["map50_95"] == pytest.approx(0.2)
    assert res["runs"]["kd"][2]["val"]["map50_95"] == pytest.approx(0.42)
    assert res["runs"]["kd"][1]["variant"].out == tmp_path / "yolo-kd-w1-s1" / "model"
    with pytest.raises(ValueError, match="at least one seed and one weight"):
        distill_runs.detector_students(td, "student.yaml", [0], tmp_path, epochs=3, weights=[], box_ratio=0.1,
                                       temperature=2.0)


def test_detector_students_in_parallel_choose_first_then_alternate_the_kinds(tmp_path, monkeypatch):
    from common import workers

    phases = []

    def fake_run(fn, jobs, *, workers, threads, bar):   # records each phase's jobs, in submission order
        phases.append((list(jobs), workers, threads))
        return {k: {"val": {"map50_95": {None: 0.3, 1.0: 0.4, 2.0: 0.35}[k[2]] + k[1] / 100},
                    "quality": {"map50_95": 0.2}, "variant": None, "history": []} for k in jobs}

    monkeypatch.setattr(workers, "run", fake_run)
    td = SimpleNamespace(model="teacher", data="d.yaml", config=SimpleNamespace(img_size=64, batch=4, lr=0.01))
    res = distill_runs.detector_students(td, "student.yaml", [0, 1, 2], tmp_path, epochs=3, weights=[2.0, 1.0],
                                         box_ratio=0.1, temperature=2.0, workers=2)
    assert phases == [([("kd", 0, 2.0), ("kd", 0, 1.0)], 2, 1),   # the weight's sweep: one full round of two
                      ([("scratch", 0, None), ("kd", 1, 1.0), ("scratch", 1, None), ("kd", 2, 1.0), ("scratch", 2, None)], 2, 1)]
    phases.clear()   # one weight: a scratch student fills phase 1's round
    distill_runs.detector_students(td, "student.yaml", [0, 1, 2], tmp_path, epochs=3, weights=[1.0],
                                   box_ratio=0.1, temperature=2.0, workers=2)
    assert phases == [([("kd", 0, 1.0), ("scratch", 0, None)], 2, 1),
                      ([("scratch", 1, None), ("kd", 1, 1.0), ("scratch", 2, None), ("kd", 2, 1.0)], 2, 1)]
    assert res["weight"] == 1.0 and sorted(res["runs"]["kd"]) == [0, 1, 2]
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        distill_runs.detector_students(td, "student.yaml", [0], tmp_path, epochs=3, weights=[1.0], box_ratio=0.1,
                                       temperature=2.0, workers=0)


def test_export_rows_carry_quality_size_speed_and_say_what_was_skipped(monkeypatch):
    from common import export_runs, measure

    monkeypatch.setattr(measure, "model_figures", lambda model, shape: {"params": 10, "gflops": 0.1, "sparsity": 0.0})
    bl = SimpleNamespace(config=SimpleNamespace(dataset="digits"), model=None, input_shape=(1, 3, 8, 8))
    ok = SimpleNamespace(skipped=None, export_seconds=1.5)
    skipped = SimpleNamespace(skipped="skipped: no tflite runtime")
    m1 = SimpleNamespace(row=lambda: {"size_mb": 2.0, "threads": 2, "notes": "ram: 300 MB"}, gpu=None)
    timed = SimpleNamespace(median_ms=10.0, speedup=2.0, lo=1.8, hi=2.2,
                            columns=lambda: {"speedup": 2.0, "speedup_lo": 1.8, "speedup_hi": 2.2, "speedup_vs": "pytorch"})
    rows = export_runs.rows({"resnet18": bl}, {("resnet18", "onnx"): ok, ("resnet18", "tflite"): skipped},
                            {("resnet18", "onnx"): {"accuracy": 0.9, "load_s": 0.1, "parity": 1e-6, "same_top1": True}},
                            {("resnet18", "onnx"): (m1, m1, "b.onnx")}, {"resnet18": {"onnx": timed}},
                            {"resnet18": {"onnx": timed}}, 32)
    onnx, tflite = rows
    assert onnx["accuracy"] == 0.9 and onnx["size_mb"] == 2.0 and onnx["speedup"] == 2.0 and onnx["params"] == 10
    assert onnx["notes"].startswith("export 1.5 s; load 0.10 s; parity max|diff| 1.0e-06; batch 32: 10.0 ms, 3200 images/s")
    assert onnx["notes"].endswith("; ram: 300 MB") and "accuracy" not in tflite
    assert tflite["notes"] == "skipped: no tflite runtime" and tflite["params"] == 10


def test_criteria_over_seeds_reuse_the_recorded_seed_and_fine_tune_the_others(monkeypatch):
    from common import pruning, pruning_runs, workloads

    tuned = []
    monkeypatch.setattr(pruning, "prune_channels", lambda model, example, ratio, crit: SimpleNamespace(crit=crit))
    monkeypatch.setattr(pruning_runs, "finetune", lambda bl, m, *, epochs, seed, lr: tuned.append((m.crit, seed, lr)))
    monkeypatch.setattr(workloads, "evaluate", lambda bl, m: {"accuracy": 0.5 if m.crit == "l1" else 0.4})
    bl = SimpleNamespace(model=None, input_shape=(1, 3, 8, 8), config=SimpleNamespace(workload="resnet18", lr=0.05))
    got = pruning_runs.criteria_over_seeds(bl, ["l1", "l2"], 0.5, [0, 1, 2], {"l1": 0.9, "l2": 0.8}, seed=0,
                                           metric="accuracy", epochs=1)
    assert got == {"l1": [0.9, 0.5, 0.5], "l2": [0.8, 0.4, 0.4]}
    assert tuned == [("l1", 1, 0.05), ("l1", 2, 0.05), ("l2", 1, 0.05), ("l2", 2, 0.05)]


def test_pruning_rows_cover_every_model_of_the_workload(monkeypatch):
    from common import measure, pruning_runs

    monkeypatch.setattr(measure, "model_figures", lambda model, shape: {"params": 5, "gflops": 0.05, "sparsity": 0.0})
    timed = SimpleNamespace(columns=lambda: {"speedup": 1.0, "speedup_lo": 0.9, "speedup_hi": 1.1, "speedup_vs": "hw1 baseline"})
    m = SimpleNamespace(row=lambda: {"size_mb": 1.0, "threads": 2, "notes": "measured"}, notes=["gzip: x"])
    q = {"accuracy": 0.8, "sparsity": 0.5}
    bl = SimpleNamespace(config=SimpleNamespace(workload="resnet18", dataset="digits"), input_shape=(1, 3, 8, 8))
    sweep = {("global", 0.5, True): q, ("local", 0.5, False): q, ("global", 0.7, True): q}   # 0.7: no files written
    rows = pruning_runs.registry_rows(
        bl, {"params": 10, "gflops": 0.1}, sweep, {0.5: {"dense": 1.0, "gzip": 0.5, "sparse": 0.6, "m": m}},
        {"0.50": timed}, {"non-uniform": q, "global": q, "verdict": "no winner"},
        {("l1", 0.5): {"after": q, "before": q, "bn": q, "figures": {"params": 5}, "m": m}}, {"l1 0.50": timed},
        {"runs": {"onnx": {"quality": q, "m": m, "diff": 1e-6}}, "variant": SimpleNamespace(model=None), "speed": {"onnx": timed}},
        struct_epochs=1, final_epochs=3, seed=0, seeds=[0, 1, 2], metric="accuracy", reference="hw1 baseline", threads=2)
    names = [r["name"] for r in rows]
    assert names == ["unstructured global 0.50 ft", "unstructured local 0.50", "unstructured global 0.70 ft",
                     "unstructured non-uniform ft", "structured l1 0.50 ft", "structured l1 0.50 final onnx"]
    assert "size_mb" not in rows[2] and "speedup_vs" not in rows[2] and rows[2]["accuracy"] == 0.8   # quality only
    rows = [r for r in rows if r["name"] != "unstructured global 0.70 ft"]
    assert rows[0]["size_mb"] == 1.0 and rows[0]["speedup_vs"] == "hw1 baseline" and rows[0]["notes"].endswith("; gzip: x")
    assert rows[1]["params"] == 10 and "size_mb" not in rows[1]
    assert rows[3]["params"] == 5 and rows[3]["notes"].startswith("1 fine-tune epochs; as cut accuracy 0.8000")
    assert rows[4]["notes"] == "parity max|diff| 1.0e-06; measured" and rows[4]["params"] == 5



def test_quantized_variants_are_evaluated_once_and_read_back_by_the_primary_metric(monkeypatch):
    from common import quantize_runs, workloads

    calls = []
    monkeypatch.setattr(workloads, "evaluate", lambda bl, path: calls.append(path) or {"accuracy": 0.5, "loss": 1.0})
    runs = quantize_runs.Variants({"resnet18": object()})
    assert runs.record("resnet18", "int8 onnx", "m.onnx", "static int8") == {"accuracy": 0.5, "loss": 1.0}
    runs.record("resnet18", "fp32 pytorch", "m.pt", "baseline", {"accuracy": 0.75}, kind="fp32")
    assert calls == ["m.onnx"]                                   # a given quality is not evaluated again
    assert runs.quality("resnet18", "fp32 pytorch") == 0.75 and runs.quality("resnet18", "int8 onnx") == 0.5
    assert list(runs) == [("resnet18", "int8 onnx"), ("resnet18", "fp32 pytorch")]   # the order they were made
    assert runs["resnet18", "int8 onnx"] == {"path": "m.onnx", "quality": {"accuracy": 0.5, "loss": 1.0},
                                             "method": "static int8", "kind": "int8"}
    with pytest.raises(ValueError, match="choose one of \\['resnet18'\\]"):
        runs.record("yolov8s", "x", "m.onnx", "?")
    with pytest.raises(ValueError, match="choose one of fp32, fp16, int8"):
        runs.record("resnet18", "x", "m.onnx", "?", kind="int4")
    assert len(calls) == 1                                       # bad input fails before any evaluation


def test_quantized_variants_become_one_row_each_with_their_measurement(monkeypatch):
    from common import measure, quantize_runs, size, workloads

    bl = SimpleNamespace(config=SimpleNamespace(dataset="digits"), model=None, input_shape=(1, 3, 8, 8))
    monkeypatch.setattr(size, "count_params", lambda model: 123)
    monkeypatch.setattr(workloads, "evaluate", lambda bl, path: {"accuracy": 0.5})
    seen = []

    def fake_measure(path, shape, **kw):
        seen.append((path, kw["ram"]))
        return SimpleNamespace(row=lambda: {"size_mb": 2.0, "latency_cpu_ms": 1.0,
                                            "notes": "cpu: paired comparison (common.speed), batch 1; measured"})

    monkeypatch.setattr(measure, "measure", fake_measure)
    runs = quantize_runs.Variants({"resnet18": bl})
    runs.record("resnet18", "fp32 pytorch", "a.pt", "baseline", kind="fp32")
    runs.record("resnet18", "int8 onnx calib 8", "b.onnx", "8 images")
    runs["resnet18", "fp16 cuda"] = {"path": None, "quality": {}, "method": "half", "kind": "fp16", "skipped": "skipped: no CUDA"}
    rows, measured = quantize_runs.measured_rows(runs, threads=2, warmup=1, repeats=2)
    assert [r["name"] for r in rows] == ["fp32 pytorch", "int8 onnx calib 8", "fp16 cuda"]
    assert seen == [("a.pt", True), ("b.onnx", False)] and set(measured) == {("resnet18", "fp32 pytorch"), ("resnet18", "int8 onnx calib 8")}
    assert rows[0]["params"] == 123 and rows[0]["size_mb"] == 2.0 and rows[0]["dataset"] == "digits"
    assert rows[0]["notes"] == "cpu: paired comparison (common.speed), batch 1; measured"   # timed in the paired run
    assert rows[1]["notes"] == "not timed: the same int8 graph as int8 onnx, only the calibration differs; measured"
    assert rows[2]["notes"] == "skipped: no CUDA" and "size_mb" not in rows[2]   # an unmeasured variant says why, with no figure
