import csv
import re

import pytest

from common import report, summary
from common.report import COLUMNS, RegistryError

ROW = {"homework": "hw1", "workload": "resnet18", "dataset": "digits", "name": "baseline",
       "method": "fp32", "accuracy": 0.987654321, "params": 11173962.0, "size_mb": 42.71,
       "latency_cpu_ms": 1.23456, "threads": 2}


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_schema_is_exactly_the_contract():
    assert COLUMNS == tuple(
        "homework,workload,dataset,name,method,precision,recall,map50,map50_95,accuracy,f1,"
        "sparsity,params,gflops,size_mb,gzip_mb,fitness,latency_cpu_ms,latency_cpu_p90_ms,"
        "speedup,speedup_lo,speedup_hi,speedup_noise,speedup_vs,pre_ms,infer_ms,post_ms,"
        "latency_gpu_ms,ram_mb,vram_mb,threads,notes".split(","))


def test_a_registry_of_the_previous_schema_is_read_with_the_new_columns_empty(tmp_path):
    path = tmp_path / "experiments.csv"
    old = [c for c in COLUMNS if not c.startswith(("speedup", "fitness", "pre_", "infer_", "post_"))]
    path.write_text(",".join(old) + "\n" + ",".join("hw1" if c == "homework" else "x" if c in report.KEY
                                                    else "" for c in old) + "\n")
    (row,) = report.read_rows(path)
    assert tuple(row) == COLUMNS and row["speedup"] == "" and row["homework"] == "hw1"
    path.write_text("homework,bogus\n")
    with pytest.raises(report.RegistryError, match="expected"):
        report.read_rows(path)


def test_upsert_inserts_formats_and_replaces_in_place(tmp_path):
    path = tmp_path / "experiments.csv"
    report.upsert(ROW, path)
    report.upsert({**ROW, "name": "other", "accuracy": 0.5}, path)
    report.upsert({**ROW, "accuracy": 0.9, "notes": "rerun"}, path)  # same key: replaced
    got = rows(path)
    assert [r["name"] for r in got] == ["baseline", "other"]
    assert got[0]["accuracy"] == "0.9000" and got[0]["notes"] == "rerun"
    assert got[0]["params"] == "11173962" and got[0]["latency_cpu_ms"] == "1.235"
    assert got[0]["recall"] == ""  # not applicable stays empty
    with open(path) as f:
        assert f.readline().strip() == ",".join(COLUMNS)



def test_upsert_can_drop_rows_an_earlier_run_left_behind(tmp_path):
    path = tmp_path / "experiments.csv"
    other = {**ROW, "workload": "yolov8n", "dataset": "shapes", "name": "old", "accuracy": None, "map50_95": 0.5}
    report.upsert([ROW, {**ROW, "name": "mixed 16"}, {**ROW, "name": "qat"}, other], path)
    report.upsert([{**ROW, "accuracy": 0.5}, {**ROW, "name": "mixed 4"}, {**ROW, "name": "qat"}], path, drop_stale=True)
    got = rows(path)
    # the run's (homework, workload, dataset) rows are replaced, in the run's order: "mixed 16" is
    # gone; another workload's rows are kept where they were
    assert [r["name"] for r in got] == ["old", "baseline", "mixed 4", "qat"]
    assert got[1]["accuracy"] == "0.5000"

@pytest.mark.parametrize("bad, message", [
    ({"colour": "red"}, "unknown columns"),
    ({"name": ""}, "key columns"),
    ({"homework": "hw9"}, "unknown homework"),
    ({"workload": "bert"}, "unknown workload"),
    ({"accuracy": "high"}, "numeric"),
    ({"accuracy": 1.5}, r"\[0, 1\]"),
    ({"latency_cpu_ms": float("inf")}, "non-finite"),
])
def test_bad_rows_are_refused_before_anything_is_written(tmp_path, bad, message):
    path = tmp_path / "experiments.csv"
    report.upsert(ROW, path)
    before = path.read_bytes()
    with pytest.raises(RegistryError, match=message):
        report.upsert([{**ROW, "name": "fine"}, {**ROW, "name": "x", **bad}], path)
    assert path.read_bytes() == before


def test_duplicate_keys_in_one_call_are_refused(tmp_path):
    with pytest.raises(RegistryError, match="twice"):
        report.upsert([ROW, ROW], tmp_path / "e.csv")
    assert not (tmp_path / "e.csv").exists()


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "experiments.csv"
    report.upsert(ROW, path)
    before = path.read_bytes()

    def explode(self, rows):
        raise OSError("disk full")

    monkeypatch.setattr(csv.DictWriter, "writerows", explode)
    with pytest.raises(OSError, match="disk full"):
        report.upsert({**ROW, "name": "new"}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiments.csv", "experiments.csv.lock"]


def test_load_filter_and_table_units(tmp_path):
    path = tmp_path / "experiments.csv"
    report.upsert([ROW, {**ROW, "workload": "yolov8n", "dataset": "shapes", "map50": 0.81,
                         "ram_mb": 512.25}], path)
    df = report.load(path, workload="yolov8n")
    assert len(df) == 1 and df.loc[0, "map50"] == pytest.approx(0.81)
    shown = report.table(report.load(path))
    assert shown.loc[0, "latency_cpu_ms"] == "1.235 ms"
    assert shown.loc[1, "ram_mb"] == "512.2 MB RSS"
    assert "recall" not in shown.columns  # empty everywhere: dropped
    assert "| homework |" in report.markdown(report.load(path))
    with pytest.raises(RegistryError, match="cannot filter"):
        report.load(path, colour="red")


def test_mlflow_logging_to_a_local_sqlite_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", str(tmp_path / "mlruns"))
    report.upsert(ROW, tmp_path / "experiments.csv")
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["nn-compression"])
    assert len(runs) == 1
    assert runs.loc[0, "metrics.accuracy"] == pytest.approx(0.9877)
    assert runs.loc[0, "params.workload"] == "resnet18"


def test_pareto_front_on_known_points():
    # (latency, quality): b beats a; c is faster but worse; d is dominated by b
    x = [10.0, 8.0, 2.0, 9.0, 8.0]
    y = [0.90, 0.95, 0.50, 0.94, 0.90]
    assert report.pareto_front(x, y) == [2, 1]


def test_comparison_puts_the_baseline_first_with_deltas_and_ratios(tmp_path):
    path = tmp_path / "experiments.csv"
    report.upsert([{**ROW, "name": "int8", "homework": "hw2", "accuracy": 0.98, "size_mb": 10.0,
                    "latency_cpu_ms": 0.5, "speedup": 3.9, "speedup_lo": 3.7, "speedup_hi": 4.1,
                    "speedup_vs": "fp32 pytorch"},
                   {**ROW, "name": "sparse", "homework": "hw3", "accuracy": 0.99, "size_mb": 40.0,
                    "speedup": 1.0, "speedup_lo": 0.97, "speedup_hi": 1.02, "speedup_vs": "hw1 baseline",
                    "notes": "dense kernels: no speed-up expected (a check)"},
                   {**ROW, "homework": "hw5", "name": "tensorrt", "accuracy": None, "size_mb": None,
                    "latency_cpu_ms": None, "notes": "skipped: no CUDA; more"},
                   {**ROW, "accuracy": 0.99, "size_mb": 40.0, "latency_cpu_ms": 2.0}], path)
    table = summary.comparison(report.load(path))[("resnet18", "digits")]
    assert list(table["name"]) == ["baseline", "int8", "sparse", "tensorrt"]
    int8 = table.iloc[1]
    # the speed-up is the row's own paired measurement, never baseline ms / row ms (2.0 / 0.5 = 4)
    assert int8["Δaccuracy"] == "-0.0100" and int8["size ×"] == "4.00"
    assert int8["speed-up × (95 % CI)"] == "3.90 (3.70-4.10)" and int8["measured against"] == "fp32 pytorch"
    assert table.iloc[2]["speed-up × (95 % CI)"] == "1.00 (0.97-1.02) dense kernels: none expected"
    assert table.iloc[3]["status"] == "skipped: no CUDA"
    readme = summary.write_summary(tmp_path)
    text = readme.read_text()
    assert "| hw1 | baseline |" in text and "## Environment" in text and "ISA:" in text
    assert (tmp_path / "pareto_resnet18_digits_speedup.png").stat().st_size > 1000
    assert (tmp_path / "pareto_resnet18_digits_size.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".*tmp*"))


def _summary_registry(tmp_path):
    path = tmp_path / "experiments.csv"
    sp = lambda v, lo, hi, vs="fp32 pytorch": {"speedup": v, "speedup_lo": lo, "speedup_hi": hi, "speedup_vs": vs}
    report.upsert([
        {**ROW, "accuracy": 0.99, "size_mb": 40.0, **sp(1.0, 0.9, 1.1, "baseline")},
        # hw2: the reference is never picked; of the rows that keep quality the clear, fastest wins
        {**ROW, "homework": "hw2", "name": "fp32 pytorch", "accuracy": 0.99, "size_mb": 40.0, **sp(1.0, 0.9, 1.1)},
        {**ROW, "homework": "hw2", "name": "int8 a", "accuracy": 0.985, "size_mb": 10.0, **sp(3.0, 2.8, 3.2)},
        {**ROW, "homework": "hw2", "name": "int8 b", "accuracy": 0.97, "size_mb": 10.0, **sp(9.0, 8.0, 10.0)},
        # hw3: no clear speed-up (dense kernels; an interval above 1 but inside the run's A/A noise of ±7 % is not
        # one): the sparsest of the equal files that keep quality
        {**ROW, "homework": "hw3", "name": "global 0.30 ft", "accuracy": 0.99, "sparsity": 0.3, "size_mb": 40.0,
         **sp(1.05, 1.02, 1.09, "hw1 baseline"), "speedup_noise": 0.07},
        {**ROW, "homework": "hw3", "name": "global 0.50 ft", "accuracy": 0.985, "sparsity": 0.5, "size_mb": 40.001},
        {**ROW, "homework": "hw3", "name": "global 0.90 ft", "accuracy": 0.5, "sparsity": 0.9, "size_mb": 40.0},
        # hw6: nothing keeps quality: the least loss, marked
        {**ROW, "homework": "hw6", "name": "teacher", "accuracy": 0.99, "size_mb": 40.0},
        {**ROW, "homework": "hw6", "name": "student-kd", "accuracy": 0.95, "size_mb": 4.0},
        {**ROW, "homework": "hw6", "name": "student-scratch", "accuracy": 0.90, "size_mb": 4.0},
        {**ROW, "dataset": "other", "accuracy": 0.7, "size_mb": 40.0}], path)
    return path


def test_the_summary_shows_the_best_row_of_each_technique(tmp_path):
    table = summary.best_rows(report.load(_summary_registry(tmp_path)), "resnet18", "digits")
    assert list(table["row"]) == ["baseline", "int8 a", "global 0.50 ft", "student-kd"]
    assert list(table["technique"]) == ["baseline", "quantization", "pruning", "distillation"]
    assert table.iloc[1]["speed-up × (95 % CI)"] == "3.00 (2.80-3.20)" and table.iloc[1]["size ×"] == "4.00"
    assert table.iloc[1]["kept quality"] == "✅ within 0.01" and table.iloc[1]["Δaccuracy"] == "-0.0050"
    assert table.iloc[3]["kept quality"] == "❌ every row loses more than 0.01"
    assert summary.best_rows(report.load(tmp_path / "nothing.csv"), "resnet18", "digits").empty


def test_the_results_readme_reads_at_a_glance(tmp_path):
    _summary_registry(tmp_path)
    text = summary.write_summary(tmp_path).read_text()
    main, other = text.index("## resnet18 / digits"), text.index("## resnet18 / other (other data)")
    assert main < other < text.index("## Environment")
    section = text[main:other]
    # the summary comes before the plots, the full table is collapsed, rows in homework order
    assert section.index("| technique |") < section.index("![") < section.index("<details>")
    full = section[section.index("<details>"):]
    assert [full.index(f"| {h} |") for h in ("hw1", "hw2", "hw3", "hw6")] == sorted(
        full.index(f"| {h} |") for h in ("hw1", "hw2", "hw3", "hw6"))
    assert "Pareto front: 1." in section


def test_long_methods_are_cut_at_a_word_for_reading():
    assert summary.short("short") == "short"
    cut = summary.short("ONNX Runtime static int8, QDQ, per-channel weights, reduce_range (300 training images)", 40)
    assert cut == "ONNX Runtime static int8, QDQ…" and len(cut) <= 40


def test_a_workload_without_hw1_takes_its_own_homeworks_baseline(tmp_path):
    """hw4's Keras twin has no hw1 row: its hw4 'baseline' row is the reference."""
    path = tmp_path / "experiments.csv"
    twin = {**ROW, "homework": "hw4", "workload": "keras_cnn"}
    report.upsert([{**twin, "name": "16 int8", "accuracy": 0.97, "size_mb": 0.1, "latency_cpu_ms": 0.1},
                   {**twin, "name": "baseline", "accuracy": 0.98, "size_mb": 0.8, "latency_cpu_ms": 0.2}], path)
    table = summary.comparison(report.load(path))[("keras_cnn", "digits")]
    assert list(table["name"]) == ["baseline", "16 int8"]
    assert table.iloc[1]["size ×"] == "8.00" and table.iloc[1]["Δaccuracy"] == "-0.0100"
    with pytest.raises(report.RegistryError, match="valid: resnet18, yolov8n, keras_cnn"):
        report.upsert({**twin, "workload": "keras"}, path)


def test_detections_are_drawn_with_titles_and_without_ground_truth():
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from common import workloads

    photos = workloads.real_photos()                       # the two photos ultralytics ships
    assert [p.name for p in photos] == ["bus.jpg", "zidane.jpg"] and all(p.is_file() for p in photos)
    pic = np.zeros((40, 60, 3), np.uint8)
    pred = np.array([[5, 5, 30, 20, 0.9, 1]], np.float32)
    fig = report.plot_detections([pic, pic], [pred, pred[:0]], [None, np.array([[0, 1, 1, 9, 9]])],
                                 ["a", "b"], ncols=2, titles=["float32", "int8"])
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["float32", "int8"]
    assert len(axes[0].patches) == 1 and len(axes[1].patches) == 1    # one prediction; one truth box
    assert axes[0].texts[0].get_text() == "b 0.90"


def test_load_run_shows_only_this_runs_data(tmp_path):
    from types import SimpleNamespace

    path = tmp_path / "experiments.csv"
    rows = [{"homework": "hw2", "workload": "resnet18", "dataset": d, "name": "fp32 pytorch", "accuracy": a}
            for d, a in (("digits", 0.99), ("fashion-mnist-small", 0.76))]
    rows.append({"homework": "hw1", "workload": "resnet18", "dataset": "digits", "name": "baseline", "accuracy": 0.99})
    report.upsert(rows, path)
    bl = SimpleNamespace(config=SimpleNamespace(dataset="digits"))
    df = report.load_run("hw2", {"resnet18": bl}, path)
    assert list(df["dataset"]) == ["digits"] and list(df["homework"]) == ["hw2"]
    assert len(report.load(path, homework="hw2")) == 2      # the other run's row stays in the registry


def test_a_grid_of_photos_is_shown_as_a_jpeg_under_200_kb():
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    noise = np.random.default_rng(0).integers(0, 255, (640, 640, 3), dtype=np.uint8)   # the worst case for a PNG
    fig = report.plot_detections([noise] * 4, [np.zeros((0, 6))] * 4, [None] * 4, ["a"], ncols=2)
    assert 10_000 < report.show_photos(fig) < 200_000


def test_no_committed_row_carries_another_workloads_tool_figures():
    """ultralytics' benchmark times the detector only: a classifier row quoting it is a keying bug
    (hw5 once keyed those figures by format alone)."""
    rows = report.read_rows(report.env.REPO_ROOT / "results" / "experiments.csv")
    wrong = [(r["homework"], r["name"]) for r in rows if r["workload"] != "yolov8n" and "ultralytics benchmark" in r["notes"]]
    assert not wrong, wrong


@pytest.mark.parametrize("x, text", [(-0.00001, "+0.0000"), (0.00001, "+0.0000"), (-0.0086, "-0.0086"),
                                     (0.02, "+0.0200")])
def test_signed_differences_never_print_minus_zero(x, text):
    assert report.signed(x) == text


@pytest.mark.parametrize("baseline, value, pt, text", [
    (0.8260, 0.7980, True, "2.80 pt below the baseline"), (0.8260, 0.8270, True, "none (0.10 pt above the baseline)"),
    (0.6577, 0.6335, False, "0.0242 below the baseline"), (0.5, 0.5, False, "none"), (0.5, 0.50001, False, "none")])
def test_a_drop_is_said_as_a_drop_never_as_a_signed_change(baseline, value, pt, text):
    assert report.drop(baseline, value, pt) == text


def test_the_knee_of_a_sweep_is_the_first_level_past_the_tolerance():
    levels = [0.05, 0.1, 0.5, 0.9]
    assert report.first_drop(levels, [0.6328, 0.6301, 0.6365, 0.5644], 0.6577, 0.01) == 0.05   # a fine-tune that costs
    assert report.first_drop(levels, [0.827, 0.826, 0.818, 0.661], 0.826, 0.01) == 0.9
    assert report.first_drop(levels, [0.826] * 4, 0.826, 0.01) is None
    assert report.first_drop([0.9, 0.1], [0.1, 0.9], 0.826, 0.01) == 0.9                     # the order given, not sorted
    with pytest.raises(ValueError, match="4 levels but 3 values"):
        report.first_drop(levels, [0.8] * 3, 0.826, 0.01)


def test_the_cheapest_level_that_holds_is_the_first_within_the_tolerance():
    clusters = [4, 16, 32]                                                                     # hw4's yolov8n, fine-tuned
    assert report.first_within(clusters, [0.2804, 0.6335, 0.6419], 0.6577, 0.02) == 32
    assert report.first_within(clusters, [0.8060, 0.8260, 0.8270], 0.8260, 0.01) == 16
    assert report.first_within([1, 16], [0.8300, 0.8000], 0.8260, 0.01) == 1                  # above the baseline holds
    assert report.first_within(clusters, [0.1, 0.2, 0.3], 0.8260, 0.01) is None
    with pytest.raises(ValueError, match="3 levels but 2 values"):
        report.first_within(clusters, [0.8, 0.8], 0.826, 0.01)


def test_show_renders_every_cell_with_no_whitespace_between_tags():
    import pandas as pd

    from common import report

    df = pd.DataFrame([{"homework": "hw3", "workload": "resnet18", "name": "a b", "accuracy": 0.81234}])
    html = report.show(df, ["workload", "name", "accuracy"]).data
    assert "<td>a b</td>" in html and "<td>resnet18</td>" in html and "0.8123" in html
    assert not re.search(r">\s+<", html)


def test_a_size_is_stored_to_the_byte_so_its_shown_rounding_is_the_measured_one():
    from common import registry, report

    true = 25_233_000 / 2 ** 20                      # 24.06406...: a print at 2 decimals says 24.06
    stored = registry._cell("size_mb", 24.0649604)
    assert stored == "24.064960" and report._fmt("size_mb", stored) == f"{24.0649604:.2f}" == "24.06"
    assert report._fmt("size_mb", registry._cell("size_mb", true)) == f"{true:.2f}"
