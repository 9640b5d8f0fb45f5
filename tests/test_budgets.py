"""Quality budgets (common.budgets): every committed row is covered by a rule and within its
budget; a row over budget fails naming it; a row no rule covers fails; purposes are shown."""

import copy

import pytest

from common import budgets, env, report

COMMITTED = env.REPO_ROOT / "results" / "experiments.csv"
DEFAULTS = {"digits", "shapes"}


def rows():
    return [r for r in report.read_rows(COMMITTED) if r["dataset"] in DEFAULTS]


@pytest.mark.parametrize("homework", report.HOMEWORKS)
def test_every_committed_row_has_a_rule_and_meets_its_budget(homework):
    table = budgets.check(homework, rows=rows())
    assert len(table) and "❌ OVER BUDGET" not in set(table["status"])
    assert set(table["name"]) == {r["name"] for r in rows() if r["homework"] == homework}


def test_a_row_over_its_budget_fails_naming_it():
    degraded = copy.deepcopy(rows())
    row = next(r for r in degraded if r["homework"] == "hw2" and r["workload"] == "resnet18" and r["name"] == "int8 openvino")
    row["accuracy"] = f"{float(row['accuracy']) - budgets.CLASSIFIER_PT - 0.003:.4f}"
    with pytest.raises(budgets.BudgetError, match="resnet18/digits/int8 openvino: accuracy .* > budget 0.01"):
        budgets.check("hw2", rows=degraded)
    table = budgets.check("hw2", rows=degraded, assert_budgets=False)     # shown, not asserted
    assert table.loc[table["name"] == "int8 openvino", "status"].tolist()[0] == "❌ OVER BUDGET"


def test_the_distilled_student_chosen_on_validation_is_budgeted_and_the_grid_is_not():
    chosen = next(r for r in rows() if r["homework"] == "hw6" and "chosen on val" in r["notes"])
    assert budgets.rule_for(chosen).max_drop == 0.05
    other = {**chosen, "notes": ""}
    assert budgets.rule_for(other).max_drop is None and "grid point" in budgets.rule_for(other).purpose
    degraded = [dict(r, accuracy="0.8100") if r["notes"] == chosen["notes"] and r["name"] == chosen["name"] else r
                for r in rows()]
    with pytest.raises(budgets.BudgetError, match="student-kd"):
        budgets.check("hw6", rows=degraded)


def test_a_row_no_rule_covers_fails_and_failures_on_purpose_say_so():
    new = {**rows()[0], "homework": "hw3", "name": "magic pruning"}
    with pytest.raises(budgets.BudgetError, match="no budget covers hw3/.*/magic pruning"):
        budgets.rule_for(new)
    detector = next(r for r in rows() if r["homework"] == "hw3" and r["name"] == "structured l1 0.50 ft" and r["workload"] == "yolov8n")
    assert budgets.rule_for(detector).purpose.startswith("shows a failure on purpose")
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
