"""common.ranking: throughput tables, ranks, and the sentences that say where the fastest runtime
changes (with a lead inside the timing spread called a tie), and make gpu's table read back."""

import math

import pytest

from common import gpu, ranking, timing


def r(runtime, device, batch, median, p90=None):
    return {"runtime": runtime, "device": device, "batch": batch, "median_ms": median,
            "p90_ms": median * 1.02 if p90 is None else p90}


ROWS = [r("pytorch", "cpu", 1, 10.0), r("onnx", "cpu", 1, 5.0), r("tflite", "cpu", 1, 4.0),
        r("pytorch", "cpu", 32, 100.0), r("onnx", "cpu", 32, 50.0), r("tflite", "cpu", 32, 80.0),
        r("pytorch", "cuda", 1, 2.0), r("onnx", "cuda", 1, 4.0),
        r("pytorch", "cuda", 32, 3.0), r("onnx", "cuda", 32, 6.0)]


def test_table_holds_throughput_per_device_and_batch_and_ranks_it():
    tab = ranking.table(ROWS).throughput
    assert list(tab.index) == ["pytorch", "onnx", "tflite"]
    assert list(tab.columns) == [("cpu", 1), ("cpu", 32), ("cuda", 1), ("cuda", 32)]
    assert tab.loc["tflite", ("cpu", 1)] == pytest.approx(250.0)
    assert tab.loc["onnx", ("cpu", 32)] == pytest.approx(640.0)
    assert math.isnan(tab.loc["tflite", ("cuda", 1)])              # not measured there: no figure
    assert ranking.table(ROWS).spread.loc["onnx", ("cpu", 1)] == pytest.approx(0.02)
    rk = ranking.table(ROWS).ranks()
    assert rk[("cpu", 1)].tolist() == [3, 2, 1] and rk[("cpu", 32)].tolist() == [3, 1, 2]
    assert rk[("cuda", 1)].tolist()[:2] == [1, 2]
    view = ranking.table(ROWS).view()
    assert view.loc["tflite", ("cpu", 1)] == "250 (#1)" and view.loc["tflite", ("cuda", 1)] == ""



def test_tied_neighbours_share_a_rank():
    rows = [r("pytorch", "cpu", 1, 10.0), r("onnx", "cpu", 1, 4.2), r("tflite", "cpu", 1, 4.0),
            r("openvino", "cpu", 1, 5.0)]        # tflite 250, onnx 238 (5 %: tie), openvino 200 (19 %: not)
    t = ranking.table(rows)
    assert t.groups(("cpu", 1)) == [["tflite", "onnx"], ["openvino"], ["pytorch"]]
    assert t.ranks()[("cpu", 1)].tolist() == [4, 1, 1, 3]
    assert t.view().loc["onnx", ("cpu", 1)] == "238 (#1=)" and t.view().loc["openvino", ("cpu", 1)] == "200 (#3)"
    assert t.order(("cpu", 1)) == "tflite = onnx > openvino > pytorch"
    paired = ranking.table(rows, ties={("cpu", 1): lambda a, b: {a, b} <= {"onnx", "openvino", "tflite"}})
    assert paired.order(("cpu", 1)) == "tflite = onnx = openvino > pytorch"     # each neighbour pair tied


def test_changes_name_a_new_winner_only_outside_the_spread():
    lines = ranking.table(ROWS).changes()
    by_pair = {line.split(":")[0]: line for line in lines}
    assert set(by_pair) == {"cpu batch 1 vs cpu batch 32", "cuda batch 1 vs cuda batch 32",
                            "cpu batch 1 vs cuda batch 1", "cpu batch 32 vs cuda batch 32"}
    assert ("the leader changes: tflite leads onnx at cpu batch 1 (250 vs 200 images/s); onnx leads tflite at "
            "cpu batch 32 (640 vs 400 images/s)") in by_pair["cpu batch 1 vs cpu batch 32"]
    assert "Order: tflite > onnx > pytorch | onnx > tflite > pytorch." in by_pair["cpu batch 1 vs cpu batch 32"]
    assert "the same leader: pytorch leads onnx at cuda batch 1" in by_pair["cuda batch 1 vs cuda batch 32"]
    # between devices only the runtimes measured on both count (tflite has no CUDA figure)
    assert ("the leader changes: onnx leads pytorch at cpu batch 1 (200 vs 100 images/s); pytorch leads onnx at "
            "cuda batch 1 (500 vs 250 images/s)") in by_pair["cpu batch 1 vs cuda batch 1"]
    # a 5 % lead with 10 % timing spread is a tie, not a winner
    noisy = [r("onnx", "cpu", 1, 5.0, 5.5), r("openvino", "cpu", 1, 5.25, 5.5),
             r("onnx", "cpu", 8, 40.0, 44.0), r("openvino", "cpu", 8, 38.0, 41.8)]
    (line,) = ranking.table(noisy).changes()
    assert "no clear change (a lead within the timing spread): onnx ties with openvino at cpu batch 1" in line
    assert "openvino ties with onnx at cpu batch 8" in line
    # a tight run (1 % spread) still needs a lead above MIN_LEAD: 5 % is drift between runs, not a winner
    tight = [r("onnx", "cpu", 1, 5.0, 5.05), r("tflite", "cpu", 1, 5.25, 5.3),
             r("onnx", "cpu", 8, 42.0, 42.4), r("tflite", "cpu", 8, 40.0, 40.4)]
    (line,) = ranking.table(tight).changes()
    assert ranking.MIN_LEAD == 0.10 and "no clear change" in line and "onnx ties with tflite" in line
    (line,) = ranking.table(noisy[:2] + [r("onnx", "cpu", 8, 36.0, 39.6), noisy[3]]).changes()
    assert "no clear leader in either column: onnx ties with openvino at cpu batch 1" in line


def test_bad_rows_are_refused():
    with pytest.raises(ValueError, match="no measurements"):
        ranking.table([])
    with pytest.raises(ValueError, match="p90_ms"):
        ranking.table([{"runtime": "onnx", "device": "cpu", "batch": 1, "median_ms": 1.0}])
    with pytest.raises(ValueError, match="0 < median_ms <= p90_ms"):
        ranking.table([r("onnx", "cpu", 1, 2.0, 1.0)])


def test_a_row_from_the_timing_harness():
    stats = timing.summarize([2.0, 2.0, 2.0, 4.0], batch=8)
    row = ranking.row("onnx", "cpu", stats)
    assert row["batch"] == 8 and row["median_ms"] == stats.median_ms and row["p90_ms"] == stats.p90_ms


def test_gpu_rows_read_make_gpus_table_and_leave_skipped_rows_out(tmp_path):
    assert ranking.gpu_rows("resnet18", tmp_path / "gpu.csv") == []          # no table yet
    rows = [{"workload": "resnet18", "dataset": "digits", "runtime": "pytorch", "precision": "fp32", "batch": 1,
             "latency_gpu_ms": 2.0, "latency_gpu_p90_ms": 2.2, "notes": ""},
            {"workload": "resnet18", "dataset": "digits", "runtime": "pytorch", "precision": "fp16", "batch": 32,
             "latency_gpu_ms": 3.0, "latency_gpu_p90_ms": 3.1, "notes": ""},
            {"workload": "resnet18", "dataset": "digits", "runtime": "onnxruntime", "precision": "fp32", "batch": 1,
             "notes": "skipped: onnxruntime has no CUDA provider"},
            {"workload": "yolov8n", "dataset": "shapes", "runtime": "tensorrt (engine)", "precision": "int8",
             "batch": 1, "latency_gpu_ms": 1.0, "latency_gpu_p90_ms": 1.1, "notes": ""}]
    import pandas as pd

    pd.DataFrame(rows, columns=list(gpu.COLUMNS)).to_csv(tmp_path / "gpu.csv", index=False)
    got = ranking.gpu_rows("resnet18", tmp_path / "gpu.csv")
    assert [(g["runtime"], g["batch"]) for g in got] == [("pytorch", 1), ("pytorch fp16", 32)]
    assert got[0]["device"] == "cuda (make gpu)" and got[0]["p90_ms"] == 2.2
    assert [g["runtime"] for g in ranking.gpu_rows("yolov8n", tmp_path / "gpu.csv")] == ["tensorrt (engine) int8"]


def test_a_paired_verdict_replaces_the_spread_rule_where_given():
    rows = [r("pytorch", "cpu", 1, 10.0), r("onnx", "cpu", 1, 5.0, p90=9.0), r("tflite", "cpu", 1, 4.0, p90=8.0),
            r("pytorch", "cpu", 32, 100.0), r("onnx", "cpu", 32, 50.0), r("tflite", "cpu", 32, 45.0)]
    spread_only = ranking.table(rows).changes()[0]
    assert "tflite ties with onnx at cpu batch 1" in spread_only        # p90 spreads of 80-100 %
    paired = ranking.table(rows, ties={("cpu", 1): lambda a, b: False, ("cpu", 32): lambda a, b: True}).changes()[0]
    assert "tflite leads onnx at cpu batch 1" in paired and "tflite ties with onnx at cpu batch 32" in paired


def test_the_same_leader_with_a_tie_in_one_column_says_where_the_lead_is_clear():
    rows = [r("onnx", "cpu", 1, 5.0, 5.5), r("openvino", "cpu", 1, 5.25, 5.5),
            r("onnx", "cpu", 8, 20.0, 20.4), r("openvino", "cpu", 8, 40.0, 40.8)]
    (line,) = ranking.table(rows).changes()
    assert "the same first place, a clear lead only at cpu batch 8" in line


def test_a_paired_row_gives_throughputs_in_the_ratio_of_the_paired_speedups():
    """The candidate's own median says 5 ms (2x), but its paired speed-up over the rounds is 1.6x:
    the table must show 1.6x the reference's images/s, the run's paired statistic."""
    from common import speed

    def sp(name, median, speedup):
        return speed.Speed(name, "pytorch", "rt", median, median * 1.1, speedup, speedup * 0.9, speedup * 1.1,
                           0.03, 20, 6, 1, 32)

    cmp = speed.Comparison({"pytorch": sp("pytorch", 10.0, 1.0), "openvino": sp("openvino", 5.0, 1.6)},
                           "pytorch", 20, 6, 2, 1)
    rows = [ranking.paired_row(n, "cpu", cmp, n) for n in ("pytorch", "openvino")]
    tp = ranking.table(rows).throughput[("cpu", 32)]
    assert tp["openvino"] / tp["pytorch"] == pytest.approx(1.6)
    assert tp["pytorch"] == pytest.approx(32 * 1000 / 10.0)
    assert rows[1]["p90_ms"] / rows[1]["median_ms"] == pytest.approx(1.1)
    assert ranking.paired_throughput(cmp, "openvino") == pytest.approx(tp["openvino"])
    assert ranking.paired_ms(cmp, "openvino") == pytest.approx(10.0 / 1.6)
