from pathlib import Path

import pytest

from common import compare, report

BASE = {"homework": "hw3", "workload": "resnet18", "dataset": "digits", "name": "unstructured global 0.30 ft",
        "method": "L1 magnitude, global + fine-tune", "accuracy": 0.99, "f1": 0.99, "sparsity": 0.0,
        "params": 2800000, "gflops": 0.28, "size_mb": 10.7, "gzip_mb": 9.9, "latency_cpu_ms": 5.0,
        "ram_mb": 400.0, "threads": 2, "notes": "cpu: median of 50 runs"}


def registry(tmp_path, name, *rows):
    path = tmp_path / name
    report.upsert(list(rows), path)
    return path


BASELINE = {**BASE, "homework": "hw1", "name": "baseline", "method": "fp32", "accuracy": 0.995, "f1": 0.995}


@pytest.mark.parametrize("profile", compare.PROFILES)
def test_a_rerun_within_the_tolerances_reproduces(tmp_path, profile):
    a = registry(tmp_path, "a.csv", BASE)
    tol = compare.SAME_CPU_TOL["accuracy"] if profile == "same-cpu" else compare.DELTA_TOL["accuracy"]
    b = registry(tmp_path, "b.csv", {**BASE, "accuracy": 0.99 - tol + 0.001,
                                     "size_mb": 10.7 * 1.01, "latency_cpu_ms": 50.0, "ram_mb": 900.0,
                                     "notes": "gpu: 1.0 ms"})
    assert compare.differences(a, b, profile_name=profile) == []


@pytest.mark.parametrize("change, column", [
    ({"accuracy": 0.99 - compare.QUALITY_TOL["accuracy"] - 0.01}, "accuracy"),   # a quality regression
    ({"accuracy": 0.96}, "accuracy"),               # 0.03 less: within the old ± 0.05, caught now
    ({"params": 2900000}, "params"),                # another architecture
    ({"size_mb": 10.7 * 1.05}, "size_mb"),
    ({"method": "L1 magnitude, local + fine-tune"}, "method"),
    ({"threads": 4}, "threads"),
    ({"f1": None}, "f1"),                           # a figure that vanished
])
@pytest.mark.parametrize("profile", compare.PROFILES)
def test_each_change_outside_its_rule_is_reported(tmp_path, change, column, profile):
    a = registry(tmp_path, "a.csv", BASELINE, BASE)
    b = registry(tmp_path, "b.csv", BASELINE, {**BASE, **change})
    problems = compare.differences(a, b, profile_name=profile)
    assert len(problems) == 1 and f": {column} " in problems[0], problems


def test_missing_and_extra_rows_are_reported_per_homework(tmp_path):
    other = {**BASE, "homework": "hw1", "name": "baseline"}
    a = registry(tmp_path, "a.csv", BASE, other)
    b = registry(tmp_path, "b.csv", {**BASE, "name": "renamed"}, other)
    assert compare.differences(a, b, homework="hw1") == []
    problems = compare.differences(a, b, homework="hw3")
    assert problems == ["missing in the re-run: hw3/resnet18/digits/unstructured global 0.30 ft",
                        "not in the committed registry: hw3/resnet18/digits/renamed"]
    with pytest.raises(ValueError, match="unknown homework 'hw9'; valid: hw1"):
        compare.differences(a, b, homework="hw9")


def test_rows_of_other_datasets_can_be_left_out(tmp_path):
    fashion = {**BASE, "dataset": "fashion-mnist-small"}
    a = registry(tmp_path, "a.csv", BASE, fashion)            # committed: defaults and another dataset
    b = registry(tmp_path, "b.csv", BASE)                     # a re-run of the defaults
    assert compare.differences(a, b) == ["missing in the re-run: hw3/resnet18/fashion-mnist-small/unstructured global 0.30 ft"]
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
    assert (f"| accuracy | {compare.SAME_CPU_TOL['accuracy']:g} | {compare.DELTA_TOL['accuracy']:g} | "
            f"{compare.QUALITY_TOL['accuracy']:g} |") in compare.rules_markdown()
    with pytest.raises(ValueError, match="choose exact, abs, rel or skip"):
        compare.Rule("roughly")
    with pytest.raises(FileNotFoundError, match="no registry at"):
        compare.differences("/nonexistent/experiments.csv", [])


def test_other_cpu_compares_the_change_against_each_registry_own_baseline(tmp_path):
    """A re-run on another CPU whose baseline moved by 0.04 keeps what the step did: no difference;
    the same absolute values with an unmoved baseline mean the step lost 0.04 more: reported."""
    a = registry(tmp_path, "a.csv", BASELINE, BASE)
    moved = registry(tmp_path, "b.csv", {**BASELINE, "accuracy": 0.955, "f1": 0.955},
                     {**BASE, "accuracy": 0.95, "f1": 0.95})
    assert compare.differences(a, moved, profile_name="other-cpu") == []
    same_base = registry(tmp_path, "c.csv", BASELINE, {**BASE, "accuracy": 0.96})
    problems = compare.differences(a, same_base, profile_name="other-cpu")
    assert len(problems) == 1 and "accuracy change against the baseline -0.0050 -> -0.0350" in problems[0], problems
    # on the same CPU the baseline's own move is a difference (nothing there moves)
    assert [p.split(": ")[1].split()[0] for p in compare.differences(a, moved, profile_name="same-cpu")] == \
        ["accuracy", "f1", "accuracy", "f1"]


def test_no_row_is_exempt_and_listed_unstable_rows_get_their_measured_tolerance(tmp_path):
    collapsed = {**BASE, "name": "structured l1 0.70 ft", "accuracy": 0.16, "f1": 0.05}
    rule = compare.unstable_rule(collapsed)
    assert rule is not None and rule.tol == 0.30 and "seed range" in rule.why
    a = registry(tmp_path, "a.csv", BASELINE, collapsed)
    within = registry(tmp_path, "b.csv", BASELINE, {**collapsed, "accuracy": 0.16 + rule.tol - 0.01})
    beyond = registry(tmp_path, "c.csv", BASELINE, {**collapsed, "accuracy": 0.16 + rule.tol + 0.05})
    assert compare.differences(a, within, profile_name="other-cpu") == []
    assert len(compare.differences(a, beyond, profile_name="other-cpu")) == 1
    # the same CPU holds even a collapsed row to its figures
    assert len(compare.differences(a, within, profile_name="same-cpu")) == 1
    assert compare.unstable_rule(BASE) is None      # a stable row
    assert compare.unstable_rule({**BASE, "name": "structured fpgm 0.50 ft"}) is rule


def test_profile_comes_from_the_machine_stamp_beside_the_committed_registry(tmp_path, monkeypatch):
    monkeypatch.delenv(compare.PROFILE_ENV, raising=False)
    a = registry(tmp_path, "experiments.csv", BASE)
    assert compare.profile(a) == "other-cpu"                    # no stamp: nothing is assumed
    compare.write_machine(a)
    assert compare.profile(a) == "same-cpu"
    stamp = tmp_path / compare.MACHINE_FILE
    stamp.write_text(stamp.read_text().replace('"isa"', '"isa_other"'))
    assert compare.profile(a) == "other-cpu"
    monkeypatch.setenv(compare.PROFILE_ENV, "same-cpu")
    assert compare.profile(a) == "same-cpu"
    monkeypatch.setenv(compare.PROFILE_ENV, "roughly")
    with pytest.raises(ValueError, match="choose one of: same-cpu, other-cpu"):
        compare.profile(a)
    with pytest.raises(ValueError, match="unknown profile"):
        compare.differences(a, a, profile_name="roughly")


def test_tolerances_catch_a_three_point_change_on_stable_rows():
    """The issue's bar: a change of 0.03 accuracy or mAP50-95 in what a step did, on any CPU."""
    for column in ("accuracy", "map50_95"):
        assert compare.SAME_CPU_TOL[column] < 0.03 and compare.DELTA_TOL[column] < 0.03


def test_docs_list_the_rules_as_they_are():
    readme = (Path(__file__).resolve().parents[1] / "docs" / "testing.md").read_text()
    table = "\n".join(("   " + line).rstrip() for line in compare.rules_markdown().splitlines())
    assert table in readme, "docs/testing.md's tolerance table is out of date: paste compare.rules_markdown() (indented 3)"
