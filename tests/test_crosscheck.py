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
