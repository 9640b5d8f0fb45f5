"""common.crosscheck: benchmark_app's report parsed and run on a tiny IR, ultralytics' fitness,
the tools' CSV (no timing is asserted)."""

import csv

import pytest

from common import crosscheck

LOG = """[Step 11/11] Dumping statistics report
[ INFO ] Execution Devices:['CPU']
[ INFO ] Count:            519 iterations
[ INFO ] Duration:         5005.05 ms
[ INFO ] Latency:
[ INFO ]    Median:        9.37 ms
[ INFO ]    Average:       9.48 ms
[ INFO ]    Min:           8.31 ms
[ INFO ]    Max:           16.82 ms
[ INFO ] Throughput:   103.70 FPS
"""


def test_benchmark_app_report_is_parsed():
    assert crosscheck.parse_benchmark_app(LOG) == {"median_ms": 9.37, "average_ms": 9.48, "min_ms": 8.31,
                                                   "max_ms": 16.82, "count": 519.0}
    fast = crosscheck.parse_benchmark_app(LOG.replace("9.37 ms", "24.28 us"))
    assert fast["median_ms"] == pytest.approx(0.02428)
    with pytest.raises(ValueError, match="no median_ms line"):
        crosscheck.parse_benchmark_app(LOG.replace("Median", "Middle"))


def test_benchmark_app_runs_on_a_tiny_ir_and_keeps_its_log(tmp_path):
    import openvino as ov
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    xml = tmp_path / "ir" / "net.xml"
    ov.save_model(ov.convert_model(net, example_input=torch.zeros(1, 3, 8, 8)), str(xml))
    out = crosscheck.benchmark_app(xml.parent, (1, 3, 8, 8), threads=1, seconds=1, log_dir=tmp_path / "logs")
    assert out["count"] >= 1 and 0 < out["min_ms"] <= out["median_ms"] <= out["max_ms"]
    assert "Median" in (tmp_path / "logs" / "benchmark_app_net.log").read_text()


def test_fitness_is_ultralytics_own():
    q = {"precision": 0.7, "recall": 0.6, "map50": 0.77, "map50_95": 0.6}
    # ultralytics 8.4 (pinned in requirements.lock) weighs P, R, mAP50, mAP50-95 as 0, 0, 0, 1
    assert crosscheck.fitness(q) == pytest.approx(0.6)


def test_save_writes_the_tools_figures(tmp_path):
    rows = [{"tool": "benchmark_app", "workload": "resnet18", "format": "openvino", "ours_ms": 9.7,
             "theirs_ms": 9.37, "ratio": 1.035}]
    path = crosscheck.save(rows, "hw5", tmp_path)
    with open(path) as f:
        back = list(csv.DictReader(f))
    assert back[0]["tool"] == "benchmark_app" and float(back[0]["ratio"]) == 1.035
    assert not list(tmp_path.glob("*.tmp"))


def test_a_step_study_recovers_twice_the_work_against_the_step_above():
    from tests.test_speed import timers

    out = crosscheck._speeds(timers({"ref": 30_000, "double": 60_000, "same": 60_000}), "ref", rounds=8,
                             threads=1, block=10, warmup=1)
    assert "step" not in out["ref"]
    d = out["double"]
    assert d["step_lo"] <= d["step"] <= d["step_hi"] and 0.35 < d["step"] < 0.7, d
    assert "no measurable difference" in crosscheck._ratio_cell(out["same"]) or 0.9 < out["same"]["step"] < 1.1
    assert crosscheck._ratio_cell(out["double"]).startswith("time x") and "noise ±" in crosscheck._ratio_cell(out["double"])


def test_openvino_gap_measures_each_step_on_a_tiny_ir(tmp_path):
    import openvino as ov
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    xml = tmp_path / "ir" / "net.xml"
    ov.save_model(ov.convert_model(net, example_input=torch.zeros(1, 3, 8, 8)), str(xml))
    steps = crosscheck.openvino_gap(xml, (1, 3, 8, 8), harness_ms=0.05, threads=1, log_dir=tmp_path / "logs")
    assert len(steps) == 5 and steps["median ms"].gt(0).all()
    assert steps["step"].iloc[-1].startswith("benchmark_app") and "no verdict" in steps[crosscheck.COLUMN].iloc[1]
    assert steps["step"].str.len().max() <= 40          # short enough for a table column
    assert any(w in steps[crosscheck.COLUMN].iloc[2] for w in (": faster", ": slower", ": no measurable difference"))
    assert crosscheck.largest_step(steps).startswith("theirs ")


def test_largest_step_names_the_step_that_moves_most():
    import pandas as pd

    steps = pd.DataFrame({"step": ["ours", "a", "b", "theirs"], "median ms": [5.0, 5.2, 7.8, 7.5],
                          crosscheck.COLUMN: ["", "time x1.04 (another moment: no interval, no verdict)",
                                              "time x1.50 (95 % CI 1.40-1.60): slower, noise ±10 %",
                                              "time x0.96 (another moment: no interval, no verdict)"]})
    assert crosscheck.largest_step(steps) == ('theirs 7.50 ms against ours 5.00 ms (time ×1.50); the largest '
                                              'single step: "b" (ratio of medians ×1.50; in the same run, the median '
                                              'of paired ratios: time x1.50 (95 % CI 1.40-1.60): slower, noise ±10 %)')
    steps.loc[2, crosscheck.COLUMN] = "time x1.44 (95 % CI 1.17-1.56): no measurable difference, noise ±27 %"
    assert crosscheck.largest_step(steps).endswith("; no single step explains the gap measurably")   # noise explains nothing
    steps.loc[1, "median ms"] = 10.0
    assert "no verdict" in crosscheck.largest_step(steps) and '"a"' in crosscheck.largest_step(steps)
    assert crosscheck.largest_step(steps).endswith("; no single step explains the gap measurably")
    steps.loc[3, crosscheck.COLUMN] = "time x0.96 (95 % CI 0.94-0.98): slower, noise ±1 %"   # a smaller step, measured
    assert crosscheck.largest_step(steps).endswith('; the largest step measured in its run: "theirs" '
                                                   '(time x0.96 (95 % CI 0.94-0.98): slower, noise ±1 %)')


def test_an_unknown_study_is_refused_before_any_work():
    with pytest.raises(ValueError, match="choose one of"):
        crosscheck._isolated("tensorflow")


def test_pinned_opens_ultralytics_runtimes_at_our_threads_and_f32_and_restores_them(tmp_path):
    import importlib

    import onnxruntime as ort
    import openvino as ov
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    onnx = tmp_path / "net.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 8, 8), str(onnx), dynamo=False)
    litert = importlib.import_module("ultralytics.nn.backends.litert")
    before = (ort.InferenceSession.__init__, ov.Core.compile_model, torch.get_num_threads())
    with crosscheck.pinned(1):
        options = ort.SessionOptions()
        sess = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])   # as ultralytics calls it
        assert sess.get_session_options().intra_op_num_threads == 1
        compiled = ov.Core().compile_model(str(onnx), device_name="CPU", config={"PERFORMANCE_HINT": "LATENCY"})
        assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
        assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) in ("f32", "<Type: 'float32'>")
        assert litert.NUM_THREADS == 1 and torch.get_num_threads() == 1
    assert (ort.InferenceSession.__init__, ov.Core.compile_model, torch.get_num_threads()) == before
    with pytest.raises(ValueError, match="choose one of"):
        with crosscheck.pinned(1, precision="int4"):
            pass
    with pytest.raises(ValueError, match="threads must be"):
        with crosscheck.pinned(0):
            pass
