from pathlib import Path

import pytest

from common import compare, report

BASE = {"homework": "hw3", "workload": "resnet18", "dataset": "digits", "name": "structured l1 0.50 ft",
        "method": "torch-pruning L1 channels + fine-tune", "accuracy": 0.99, "f1": 0.99, "sparsity": 0.0,
        "params": 2800000, "gflops": 0.28, "size_mb": 10.7, "gzip_mb": 9.9, "latency_cpu_ms": 5.0,
        "ram_mb": 400.0, "threads": 2, "notes": "cpu: median of 50 runs"}


def registry(tmp_path, name, *rows):
    path = tmp_path / name
    report.upsert(list(rows), path)
    return path


def test_a_rerun_within_the_tolerances_reproduces(tmp_path):
    a = registry(tmp_path, "a.csv", BASE)
    b = registry(tmp_path, "b.csv", {**BASE, "accuracy": 0.99 - compare.QUALITY_TOL["accuracy"] + 0.001,
                                     "size_mb": 10.7 * 1.01, "latency_cpu_ms": 50.0, "ram_mb": 900.0,
                                     "notes": "gpu: 1.0 ms"})
    assert compare.differences(a, b) == []


@pytest.mark.parametrize("change, column", [
    ({"accuracy": 0.99 - compare.QUALITY_TOL["accuracy"] - 0.01}, "accuracy"),   # a quality regression
    ({"params": 2900000}, "params"),                # another architecture
    ({"size_mb": 10.7 * 1.05}, "size_mb"),
    ({"method": "torch-pruning L2 channels + fine-tune"}, "method"),
    ({"threads": 4}, "threads"),
    ({"f1": None}, "f1"),                           # a figure that vanished
])
def test_each_change_outside_its_rule_is_reported(tmp_path, change, column):
    a = registry(tmp_path, "a.csv", BASE)
    b = registry(tmp_path, "b.csv", {**BASE, **change})
    problems = compare.differences(a, b)
    assert len(problems) == 1 and f": {column} " in problems[0], problems


def test_missing_and_extra_rows_are_reported_per_homework(tmp_path):
    other = {**BASE, "homework": "hw1", "name": "baseline"}
    a = registry(tmp_path, "a.csv", BASE, other)
    b = registry(tmp_path, "b.csv", {**BASE, "name": "renamed"}, other)
    assert compare.differences(a, b, homework="hw1") == []
    problems = compare.differences(a, b, homework="hw3")
    assert problems == ["missing in the re-run: hw3/resnet18/digits/structured l1 0.50 ft",
                        "not in the committed registry: hw3/resnet18/digits/renamed"]
    with pytest.raises(ValueError, match="unknown homework 'hw9'; valid: hw1"):
        compare.differences(a, b, homework="hw9")


def test_rows_of_other_datasets_can_be_left_out(tmp_path):
    fashion = {**BASE, "dataset": "fashion-mnist-small"}
    a = registry(tmp_path, "a.csv", BASE, fashion)            # committed: defaults and another dataset
    b = registry(tmp_path, "b.csv", BASE)                     # a re-run of the defaults
    assert compare.differences(a, b) == ["missing in the re-run: hw3/resnet18/fashion-mnist-small/structured l1 0.50 ft"]
    assert compare.differences(a, b, datasets={"digits", "shapes"}) == []
    assert len(compare.differences(a, registry(tmp_path, "c.csv", fashion), datasets={"digits"})) == 1


def test_spread_reports_the_largest_difference_and_where(tmp_path):
    a = registry(tmp_path, "a.csv", BASE, {**BASE, "name": "x", "accuracy": 0.5})
    b = registry(tmp_path, "b.csv", {**BASE, "accuracy": 0.98}, {**BASE, "name": "x", "accuracy": 0.47})
    got = compare.spread(a, b)
    assert got["accuracy"][0] == pytest.approx(0.03) and got["accuracy"][1].endswith("/x")
    assert got["params"] == (0.0, got["params"][1])


def test_every_column_has_a_rule_and_bad_rules_fail():
    assert set(compare.RULES) | set(report.KEY) == set(report.COLUMNS)
    assert f"| accuracy | ± {compare.QUALITY_TOL['accuracy']:g} |" in compare.rules_markdown()
    with pytest.raises(ValueError, match="choose exact, abs, rel or skip"):
        compare.Rule("roughly")
    with pytest.raises(FileNotFoundError, match="no registry at"):
        compare.differences("/nonexistent/experiments.csv", [])


def test_quality_of_collapsed_rows_is_not_compared_but_their_structure_is(tmp_path):
    base = {**BASE, "homework": "hw1", "name": "baseline", "accuracy": 0.99}
    collapsed = {**BASE, "accuracy": 0.99 - compare.COLLAPSE_DROP - 0.05}     # e.g. 70 % of the channels gone
    a = registry(tmp_path, "a.csv", base, collapsed)
    b = registry(tmp_path, "b.csv", base, {**collapsed, "accuracy": 0.1, "f1": 0.05})
    assert compare.differences(a, b) == []
    c = registry(tmp_path, "c.csv", base, {**collapsed, "accuracy": 0.1, "params": 1})
    assert [p.split(": ")[1].split()[0] for p in compare.differences(a, c)] == ["params"]
    healthy = registry(tmp_path, "d.csv", base, {**BASE, "accuracy": 0.99 - compare.COLLAPSE_DROP - 0.05})
    assert len(compare.differences(a, healthy)) == 0            # a drop into the unstable regime: either side counts
    assert len(compare.differences(registry(tmp_path, "e.csv", base, BASE),
                                   registry(tmp_path, "f.csv", base, {**BASE, "accuracy": 0.9}))) == 1


def test_readme_lists_the_rules_as_they_are():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = "\n".join("   " + line for line in compare.rules_markdown().splitlines())
    assert table in readme, "README's tolerance table is out of date: paste compare.rules_markdown() (indented 3)"
