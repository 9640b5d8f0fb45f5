"""Quality budgets (common.budgets): every committed row is covered by a rule and within its
budget; a row over budget fails naming it; a row no rule covers fails; purposes are shown."""

import copy

import pytest

from common import budgets, data, env, report

COMMITTED = env.REPO_ROOT / "results" / "experiments.csv"
DEFAULTS = set(data.OFFLINE_DEFAULT.values())


def rows():
    return [r for r in report.read_rows(COMMITTED) if r["dataset"] in DEFAULTS]


@pytest.mark.parametrize("homework", report.HOMEWORKS)
def test_every_committed_row_has_a_rule_and_meets_its_budget(homework):
    table = budgets.check(homework, rows=rows())
    assert len(table) and budgets.OVER not in set(table["status"])
    assert set(table["name"]) == {r["name"] for r in rows() if r["homework"] == homework}


def test_a_row_over_its_budget_fails_naming_it():
    degraded = copy.deepcopy(rows())
    row = next(r for r in degraded if r["homework"] == "hw2" and r["workload"] == "resnet18" and r["name"] == "int8 openvino")
    row["accuracy"] = f"{float(row['accuracy']) - budgets.CLASSIFIER_PT - 0.003:.4f}"
    with pytest.raises(budgets.BudgetError, match=f"resnet18/{data.OFFLINE_DEFAULT['resnet18']}/int8 openvino: accuracy .* > budget 0.01"):
        budgets.check("hw2", rows=degraded)
    table = budgets.check("hw2", rows=degraded, assert_budgets=False)     # shown, not asserted
    assert table.loc[table["name"] == "int8 openvino", "status"].tolist()[0] == "❌ OVER BUDGET"


def test_the_distilled_student_chosen_on_validation_is_budgeted_on_every_seed_and_the_grid_is_not():
    chosen = next(r for r in rows() if r["homework"] == "hw6" and "chosen on val" in r["notes"])
    assert budgets.rule_for(chosen).max_drop == 0.05
    other = {**chosen, "notes": ""}
    assert budgets.rule_for(other).max_drop is None and "grid point" in budgets.rule_for(other).purpose
    base = float(next(r for r in rows() if r["homework"] == "hw6" and r["name"] == "teacher"
                      and r["workload"] == "resnet18")["accuracy"])
    key = ("resnet18", chosen["name"])
    good = budgets.targets("hw6", rows=rows(), seeds={key: [base - 0.01, base - 0.02, base - 0.03]})
    line = good[good["name"] == chosen["name"]].iloc[0]
    assert line["status"] == budgets.WITHIN and line["value"] == pytest.approx(base - 0.02)
    assert line["seeds"].startswith("mean of 3, worst")
    # one seed over: the worst seed decides, the mean (inside the budget) does not
    bad = budgets.targets("hw6", rows=rows(), seeds={key: [base - 0.01, base - 0.01, base - 0.08]})
    assert bad.loc[bad["name"] == chosen["name"], "status"].iloc[0] == budgets.KNOWN_MISS
    with pytest.raises(ValueError, match="no hw6 row named"):
        budgets.targets("hw6", rows=rows(), seeds={("resnet18", "student-nobody"): [0.9]})


def test_a_known_miss_is_shown_over_its_budget_and_not_asserted_and_an_unexpected_one_fails():
    degraded = copy.deepcopy(rows())
    tfl = next(r for r in degraded if r["homework"] == "hw2" and r["workload"] == "yolov8n" and r["name"] == "tflite int8")
    rule = budgets.rule_for(tfl)
    assert rule.known_miss and rule.max_drop == budgets.DETECTOR_MAP
    base = float(next(r for r in degraded if r["homework"] == "hw2" and r["workload"] == "yolov8n"
                      and r["name"] == "fp32 pytorch")["map50_95"])
    tfl["map50_95"] = f"{base - 0.1:.4f}"
    table = budgets.check("hw2", rows=degraded)              # known: shown, the run goes on
    assert table.loc[(table["name"] == "tflite int8") & (table["workload"] == "yolov8n"), "status"].iloc[0] == budgets.KNOWN_MISS
    assert "1 row(s) over a budget the course expects" in budgets.misses(table)
    assert "known miss" in budgets.show(table).data
    tfl["map50_95"] = f"{base:.4f}"                           # a known miss that meets its budget says so
    table = budgets.check("hw2", rows=degraded)
    assert table.loc[(table["name"] == "tflite int8") & (table["workload"] == "yolov8n"), "status"].iloc[0] == budgets.WITHIN
    onnx = next(r for r in degraded if r["homework"] == "hw2" and r["workload"] == "yolov8n" and r["name"] == "int8 onnx")
    onnx["map50_95"] = f"{base - 0.1:.4f}"                    # not expected: fails
    with pytest.raises(budgets.BudgetError, match="yolov8n/shapes/int8 onnx"):
        budgets.check("hw2", rows=degraded)


def test_a_row_no_rule_covers_fails_and_every_known_miss_has_a_budget():
    new = {**rows()[0], "homework": "hw3", "name": "magic pruning"}
    with pytest.raises(budgets.BudgetError, match="no budget covers hw3/.*/magic pruning"):
        budgets.rule_for(new)
    detector = next(r for r in rows() if r["homework"] == "hw3" and r["name"] == "structured l1 0.50 ft" and r["workload"] == "yolov8n")
    assert budgets.rule_for(detector).known_miss and budgets.rule_for(detector).max_drop == budgets.DETECTOR_MAP
    assert all(b.max_drop is not None for b in budgets.BUDGETS if b.known_miss)
    with pytest.raises(ValueError, match="unknown homework 'hw9'"):
        budgets.targets("hw9", rows=rows())


def test_hw1_targets_are_met_by_the_committed_baselines():
    base = {(r["workload"]): r for r in rows() if r["homework"] == "hw1"}
    for (w, metric), goal in budgets.TARGETS.items():
        assert float(base[w][metric]) >= goal, (w, metric)


def test_a_run_without_hw1_rows_uses_the_homework_reference_or_fails():
    alone = [r for r in rows() if r["homework"] != "hw1"]       # e.g. `pytest hw2_quantization` alone
    table = budgets.check("hw2", rows=alone)                     # hw2's own "fp32 pytorch" rows
    assert (table["baseline"].dropna() > 0).all() and "✅ within budget" in set(table["status"])
    with pytest.raises(budgets.BudgetError, match="no baseline row"):
        budgets.check("hw3", rows=alone)                          # hw3 writes no reference row


def test_the_budget_table_can_leave_out_rows_without_a_budget_and_says_how_many():
    table = budgets.check("hw3", rows=rows())
    unbudgeted = int(table["budget"].map(lambda v: v is None or v != v).sum())
    assert unbudgeted > 0                                         # the sweep points of the committed run
    full, short = budgets.show(table).data, budgets.show(table, budgeted_only=True).data
    assert len(short) < len(full) and f"{unbudgeted} rows without a budget" in short
    assert "rows without a budget" not in full
    assert short.count("<tr>") == len(table) - unbudgeted        # every budgeted row (the header row has a style)
    import html

    long = {c for c in table["claim"].tolist() + table["status"].tolist()
            if len(c) > 24 and c not in (budgets.WITHIN, budgets.OVER, budgets.KNOWN_MISS)}
    assert long and all(full.count(html.escape(text)) == 1 for text in long)   # each long claim written once, under the table
    assert "<td>[1]</td>" in full and "Claims and purposes:<br>[1] " in full
