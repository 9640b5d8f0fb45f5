"""The paired speed harness (common.speed) on callables of known relative cost, its verdict
wording, and the worker path end to end on a tiny saved model (no timing is asserted there)."""

import numpy as np
import pytest

from common import report, speed


def busy(n: int) -> None:
    s = 0
    for i in range(n):
        s += i * i


def timers(work: dict[str, int]):
    return {name: (lambda n: lambda wu, k: speed.time_calls(lambda: busy(n), wu, k))(n)
            for name, n in work.items()}


def run(work, reference="ref", rounds=10, block=15):
    samples = speed.interleave(timers(work), reference, rounds=rounds, block=block, warmup=2)
    return speed.summarize(samples, reference, block=block, threads=1)


def test_twice_the_work_is_recovered_within_the_interval():
    s = run({"ref": 40_000, "half": 20_000, "double": 80_000})
    band = 1 + s["ref"].noise
    assert s["half"].lo / band <= 2.0 <= s["half"].hi * band, s["half"]
    assert s["double"].lo / band <= 0.5 <= s["double"].hi * band, s["double"]
    assert s["half"].verdict.endswith(")") and "x faster" in s["half"].verdict
    assert "x slower" in s["double"].verdict
    assert s["ref"].is_reference and s["ref"].verdict.startswith("reference (A/A")


def test_two_identical_callables_give_an_interval_containing_one():
    s = run({"ref": 30_000, "same": 30_000})
    assert s["same"].lo <= 1.0 * (1 + s["same"].noise) and s["same"].hi >= 1.0 / (1 + s["same"].noise)
    assert s["same"].verdict.startswith("no measurable difference")


def test_rounds_interleave_reference_first_and_last_with_rotated_candidates():
    order = []

    def t(name):
        return lambda wu, k: order.append(name) or [1.0] * k

    samples = speed.interleave({"r": t("r"), "a": t("a"), "b": t("b")}, "r", rounds=2, block=1, warmup=0)
    assert order == ["r", "a", "b", "r", "r", "b", "a", "r"]
    assert len(samples["r"]) == 4 and len(samples["a"]) == 2


def test_known_ratios_give_exact_speedups_and_a_tight_interval():
    per_round = {"r": [10.0] * 6, "c": [5.0] * 6}
    samples = {"r": [np.array([v]) for v in [10.0] * 12], "c": [np.array([v]) for v in per_round["c"]]}
    s = speed.summarize(samples, "r", block=1, threads=2)
    assert s["c"].speedup == s["c"].lo == s["c"].hi == 2.0
    assert s["r"].speedup == 1.0 and s["r"].noise == speed.MIN_NOISE
    assert s["c"].median_ms == 5.0 and s["c"].rounds == 6


@pytest.mark.parametrize("sp, lo, hi, noise, expected", [
    (2.31, 2.20, 2.45, 0.03, "2.31x faster (95 % CI 2.20-2.45)"),
    (0.5, 0.45, 0.55, 0.03, "2.00x slower (95 % CI 1.82-2.22)"),
    (1.02, 0.97, 1.06, 0.03, "no measurable difference (1.02x, 95 % CI 0.97-1.06)"),
    (1.05, 1.04, 1.06, 0.05, "no measurable difference (1.05x, 95 % CI 1.04-1.06, inside this run's A/A noise "
                             "of ±5 %)"),  # inside the noise
    (1.05, 1.04, 1.06, 0.01, "1.05x faster (95 % CI 1.04-1.06)"),                     # noise floored at 3 %
    (0.95, 0.94, 0.96, 0.01, "1.05x slower (95 % CI 1.04-1.06)"),
])
def test_words_on_both_sides(sp, lo, hi, noise, expected):
    assert speed.words(sp, lo, hi, noise) == expected


def test_words_rejects_an_interval_that_misses_its_estimate():
    with pytest.raises(speed.SpeedError, match="must contain"):
        speed.words(2.0, 1.0, 1.5)


def test_against_target():
    s = speed.Speed("c", "r", "x", 1, 1, 5.0, 4.5, 5.5, 0.03, 8, 25, 2)
    assert speed.against_target(s, 4) == "met"
    assert speed.against_target(s, 6) == "not met"
    assert speed.against_target(s, 5).startswith("undecided")


def test_bootstrap_is_seeded_and_brackets_the_median():
    v = [1.0, 1.1, 0.9, 1.05, 0.95, 1.2, 1.0, 0.98]
    assert speed.bootstrap_median(v) == speed.bootstrap_median(v)
    m, lo, hi = speed.bootstrap_median(v)
    assert lo <= m <= hi and m == pytest.approx(np.median(v))


def test_bad_input_is_refused_before_any_work(tmp_path):
    with pytest.raises(speed.SpeedError, match="reference 'x' is not one of"):
        speed.compare("x", {"a": tmp_path / "a.onnx"}, (1, 3, 8, 8))
    with pytest.raises(speed.SpeedError, match="does not exist"):
        speed.compare("a", {"a": tmp_path / "a.onnx"}, (1, 3, 8, 8))
    with pytest.raises(speed.SpeedError, match="pass the path"):
        speed.compare("a", {"a": object()}, (1, 3, 8, 8))
    with pytest.raises(speed.SpeedError, match="rounds >= 2"):
        speed.interleave({"r": lambda wu, k: [1.0]}, "r", rounds=1)


def test_registry_columns_round_trip(tmp_path):
    row = {"homework": "hw2", "workload": "resnet18", "dataset": "digits", "name": "int8 onnx",
           "method": "m"}
    s = speed.Speed("int8 onnx", "baseline", "onnxruntime", 2.5, 3.0, 4.0, 3.5, 4.5, 0.04, 8, 25, 2)
    row.update(s.columns())
    path = report.upsert(row, tmp_path / "experiments.csv")
    back = report.read_rows(path)[0]
    assert float(back["speedup"]) == 4.0 and float(back["speedup_lo"]) == 3.5
    assert float(back["speedup_hi"]) == 4.5 and back["speedup_vs"] == "baseline"
    assert speed.row_words(back) == s.verdict == "4.00x faster (95 % CI 3.50-4.50)"
    assert speed.row_words({"name": "x"}) == ""


def test_compare_end_to_end_in_worker_processes(tmp_path, monkeypatch):
    """Two runtimes of one tiny network, each in its own worker; the table and the registry
    columns come back (quick rounds: the timings themselves are not checked)."""
    import torch

    monkeypatch.setenv("NNC_QUICK_TIMING", "1")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten()).eval()
    pt = tmp_path / "net.pt"
    torch.save(net, pt)
    onnx = tmp_path / "net.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 8, 8), str(onnx), dynamo=False)
    c = speed.compare("pytorch", {"pytorch": pt, "onnx": onnx}, (1, 3, 8, 8), threads=1)
    assert c.rounds == speed.QUICK_ROUNDS and c["onnx"].runtime == "onnxruntime"
    assert c["pytorch"].runtime == "pytorch"
    df = c.frame()
    assert list(df.model) == ["pytorch", "onnx"] and "verdict" in df
    rows = [{"name": "baseline"}, {"name": "onnx"}, {"name": "other"}]
    c.update(rows, names={"baseline": "pytorch"})
    assert rows[0]["speedup_vs"] == rows[1]["speedup_vs"] == "baseline"
    assert "speedup" not in rows[2]
    assert "A/A" in c.describe() and "Everything else" not in c.describe()   # quick blocks: too short to say
    with pytest.raises(KeyError, match="was not timed"):
        c["missing"]


def test_a_fast_model_gets_blocks_of_at_least_min_block_ms(tmp_path, monkeypatch):
    import torch

    monkeypatch.delenv("NNC_QUICK_TIMING", raising=False)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    onnx = tmp_path / "tiny.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 8, 8), str(onnx), dynamo=False)
    c = speed.compare("a", {"a": onnx, "b": onnx}, (1, 3, 8, 8), threads=1, rounds=2, block=2, warmup=0)
    # a call of this network takes far less than MIN_BLOCK_MS / 2: each block has more calls than asked
    assert 2 < c["a"].block <= speed.MAX_BLOCK and c.rounds == 2
    assert "more for a fast model" in c.describe()


def comparison(medians: dict[str, list[float]], reference: str = "r") -> speed.Comparison:
    """A Comparison built from exact per-round medians (no timing)."""
    samples = {n: [np.array([v]) for v in (sum(([v, v] for v in m), []) if n == reference else m)]
               for n, m in medians.items()}
    s = speed.summarize(samples, reference, block=1, threads=2)
    return speed.Comparison(s, reference, len(medians[reference]), 1, 0, 2, speed.round_medians(samples, reference))


def test_fastest_keeps_a_tie_a_tie_and_never_names_the_reference():
    c = comparison({"r": [10.0] * 8, "a": [5.0, 5.1] * 4, "b": [5.1, 5.0] * 4, "slow": [8.0] * 8})
    assert set(c.fastest()) == {"a", "b"} and "r" not in c.fastest()
    assert c.fastest(["b", "slow"]) == ["b"]
    text = c.ranking()
    assert text.index("slow") > text.index(" / b 1.") and text.count(" = ") == 1
    assert text.count(" > ") == 1 and text.index(" > ") < text.index("slow")
    assert not text.startswith("r ") and " r " not in text and ("[a / b " in text or "[b / a " in text)
    assert "; q" in c.ranking(note=lambda n: "q")
    clear = comparison({"r": [10.0] * 8, "a": [2.0] * 8, "b": [5.0] * 8})
    assert clear.fastest() == ["a"] and "[" not in clear.ranking() and clear.ranking().count(" > ") == 1
    with pytest.raises(speed.SpeedError, match="only the reference"):
        comparison({"r": [10.0] * 4}).fastest()


def test_a_tie_does_not_chain_a_model_no_faster_than_the_reference_into_the_lead():
    ref = [10.0, 10.6, 10.6, 10.0] * 4           # two blocks per round: A/A noise of 6 %
    samples = {"r": [np.array([v]) for v in ref], "a": [np.array([v]) for v in [9.4, 9.45] * 4],
               "b": [np.array([v]) for v in [9.9, 9.95] * 4]}
    c = speed.Comparison(speed.summarize(samples, "r", block=1, threads=2), "r", 8, 1, 0, 2,
                         speed.round_medians(samples, "r"))
    assert c.beats_reference("a") and not c.beats_reference("b") and c.tied("a", "b")
    assert c.fastest() == ["a"]
    assert c.groups() == [["a"], ["b"]] and not c.same_rank("a", "b") and c.same_rank("b", "r")
    assert "> b 1.04x (1.04-1.04) [a / b " in c.ranking()
    assert ": no measurable difference, but b is no different from r]" in c.ranking()


def test_tied_neighbours_share_a_rank_and_each_symbol_rests_on_its_printed_pair():
    c = comparison({"r": [10.0] * 8, "a": [2.0] * 8, "b": [5.0, 5.05] * 4, "c": [5.05, 5.0] * 4,
                    "d": [5.1] * 8, "e": [5.1 * 1.02] * 8})
    assert c.groups() == [["a"], ["b", "c", "d", "e"]]          # each neighbour pair within 2 %
    text = c.ranking()
    assert text.count(" > ") == 1 and text.count(" = ") == 3 and text.count("[") == 3   # a > b: plain from the intervals
    assert "[d / e 1.02x" in text


def test_describe_states_the_verdict_rule():
    c = comparison({"r": [10.0] * 4, "a": [5.0] * 4})
    assert "whole interval lies above 1.03x" in c.describe() and "no measurable difference" in c.describe()


def test_describe_gives_the_measured_a_a_interval_and_the_floor_apart():
    quiet = comparison({"r": [10.0] * 8, "a": [5.0] * 8})       # A/A exactly 1: the floor decides
    assert "1.00x, 95 % CI 1.00-1.00 (±0 %); the noise band is the course's floor, ±3 %" in quiet.describe()
    ref = [10.0, 10.6, 10.6, 10.0] * 4                            # A/A of 6 %: the measurement decides
    samples = {"r": [np.array([v]) for v in ref], "a": [np.array([5.0])] * 8}
    noisy = speed.Comparison(speed.summarize(samples, "r", block=1, threads=1), "r", 8, 1, 0, 1,
                             speed.round_medians(samples, "r"))
    assert "(±6 %); the noise band is that, ±6 %" in noisy.describe()
    assert "above 1.06x" in noisy.describe()


def test_time_words_is_the_same_verdict_as_a_time_ratio():
    assert speed.time_words(0.5, 0.45, 0.55, 0.1) == "time x2.00 (95 % CI 1.82-2.22): slower, noise ±10 %"
    assert speed.time_words(2.0, 1.9, 2.1) == "time x0.50 (95 % CI 0.48-0.53): faster, noise ±3 %"
    assert "no measurable difference" in speed.time_words(0.65, 0.58, 0.78, 0.3)


def test_plot_speed_quality_numbers_every_model_fastest_first_and_needs_every_quality():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common import report

    c = comparison({"r": [10.0] * 8, "a": [2.0] * 8, "b": [5.0] * 8})
    fig, ax = plt.subplots()
    key = report.plot_speed_quality(c, {"r": 0.99, "a": 0.95, "b": 0.98}, "accuracy", ax=ax, title="t")
    assert key == ["1 a", "2 b", "3 r (reference: its A/A ratio)"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == key
    assert ax.get_xscale() == "linear" and "accuracy" in ax.get_ylabel() and "over r, batch 1" in ax.get_xlabel()
    with pytest.raises(KeyError, match=r"no quality for \['b'\]"):
        report.plot_speed_quality(c, {"r": 0.99, "a": 0.95}, "accuracy", ax=ax)
    plt.close(fig)


def test_plot_speed_quality_gives_points_that_nearly_coincide_one_label_and_colours_kinds():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common import report

    c = comparison({"r": [10.0] * 8, "a": [2.0] * 8, "b": [2.02] * 8, "d": [5.0] * 8})
    fig, ax = plt.subplots()
    key = report.plot_speed_quality(c, {"r": 0.99, "a": 0.95, "b": 0.95, "d": 0.98}, "accuracy", ax=ax,
                                    colors={"a": "tab:red"})
    assert key == ["1 a", "2 b (= 1)", "3 d", "4 r (reference: its A/A ratio)"]   # a and b: no measurable difference
    same = comparison({"r": [10.0] * 8, "a": [2.0] * 8, "b": [10.05, 9.95] * 4})   # b: no different from r
    assert "2 b (= 3)" in report.plot_speed_quality(same, {"r": 0.9, "a": 0.9, "b": 0.9}, "accuracy", ax=plt.subplots()[1])
    assert sorted(t.get_text() for t in ax.texts) == ["1,2", "3", "4"]      # a and b share a label
    assert [h.get_color() for h in ax.get_legend().legend_handles] == ["tab:red", "tab:blue", "tab:blue", "black"]
    plt.close(fig)


def test_point_labels_that_would_overlap_merge_and_runs_become_ranges():
    from common import report

    assert report._numbers([0, 1, 2, 3, 6, 8, 9]) == "1-4,7,9,10"
    # 0 and 1 are far apart as points, but 0's label (right of it) would cover 1's label
    pts = [(1.0, 0.5), (1.1, 0.5), (3.0, 0.5), (1.0, 0.9)]
    assert report._label_groups(pts, False) == [[0], [1], [2], [3]]
    assert report._label_groups(pts, False, char=0.06, tall=0.05) == [[0, 1], [2], [3]]


def test_plot_quality_size_draws_seed_means_labels_the_named_and_needs_their_points():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common import report

    _, ax = plt.subplots()
    points = {"teacher": (40.0, 0.99), "student-scratch": (3.0, 0.81), "student-kd": (3.0, 0.96), "student-x": (3.0, 0.9)}
    drawn = report.plot_quality_size(points, "accuracy", ax, labelled=("teacher", "student-kd"),
                                     over_seeds={"student-scratch": [0.81, 0.84, 0.91]}, seed=0)
    assert drawn == ["teacher", "student-scratch: mean, range of 3 seeds", "student-kd, seed 0"]
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("model file size, MB")
    with pytest.raises(KeyError, match="no point"):
        report.plot_quality_size(points, "accuracy", ax, labelled=("nobody",))
    plt.close("all")


def test_contention_table_has_every_condition_and_thread_count(tmp_path):
    """``common.contention`` (the measurement behind ``THREADS = 1``) on a tiny network: one row
    per condition and thread count, busy processes gone afterwards (timings not checked)."""
    import subprocess

    import torch

    from common import contention

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    pt = tmp_path / "net.pt"
    torch.save(net, pt)
    conditions = (("quiet", 0, 0), ("one busy process", 1, 0))
    df = contention.run(pt, (1, 3, 8, 8), threads=(1, 2), rounds=2, calls=3, conditions=conditions)
    assert list(zip(df.condition, df.threads)) == [("quiet", 1), ("quiet", 2), ("one busy process", 1), ("one busy process", 2)]
    assert (df.min_ms <= df.median_ms).all() and (df.median_ms <= df.max_ms).all()
    left = subprocess.run(["pgrep", "-f", contention.BUSY], capture_output=True, text=True).stdout.split()
    assert not left, f"busy processes left running: {left}"
    with pytest.raises(ValueError, match="threads >= 1"):
        contention.run(pt, (1, 3, 8, 8), threads=(0,))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        contention.run(tmp_path / "missing.pt", (1, 3, 8, 8))


def test_background_counts_what_else_ran_in_cpus():
    """Two snapshots 2 s apart at 100 jiffies/s: 300 busy jiffies of which the worker used 200, 50 stolen:
    the rest of the machine used 0.5 CPU and the hypervisor 0.25."""
    import os

    hz = os.sysconf("SC_CLK_TCK")
    bg = speed.Background()
    bg.add("a", (10.0, 1000, 0, 100), (12.0, 1000 + 3 * hz, hz // 2, 100 + 2 * hz))
    bg.add("a", None, (13.0, 0, 0, 0))                       # no /proc: nothing counted
    bg.add("short", (10.0, 0, 0, 0), (10.1, 50 * hz, 0, 0))  # 0.1 s of blocks: too short to report
    assert "short" not in bg.cpus()
    other, steal = bg.cpus()["a"]
    assert other == pytest.approx(0.5) and steal == pytest.approx(0.25, abs=0.01)
    snap = speed.cpu_snapshot(os.getpid())
    assert snap is None or (len(snap) == 4 and snap[1] >= 0)
    assert speed.cpu_snapshot(2 ** 22 + 12345) is None        # no such process


def test_describe_says_what_else_used_the_machine():
    c = comparison({"r": [10.0] * 4, "a": [5.0] * 4})
    assert "Everything else" not in c.describe()             # not measured: not mentioned
    c.background = {"r": (0.1, 0.0), "a": (0.9, 0.0)}
    assert "used 0.50 CPU on average" in c.describe() and "at most 0.90, during the blocks of a)" in c.describe()
