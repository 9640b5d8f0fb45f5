"""Faults planted in a copy of the committed registry must each be reported by
``common.compare``, the check ``make test`` runs on every re-executed notebook's rows: int8 rows
degraded, a fine-tune undone, the distilled student degraded, a size doubled, a sparsity
changed. On the CPU that made the registry every planted fault is caught; on another CPU the
rows listed in ``compare.UNSTABLE`` are held only to their measured spread, and this file states
exactly which faults that lets through."""

import copy

import pytest

from common import compare, data, env, report

COMMITTED = env.REPO_ROOT / "results" / "experiments.csv"
DEFAULTS = set(data.OFFLINE_DEFAULT.values())
D = data.OFFLINE_DEFAULT["resnet18"]   # the classifier's default dataset, as row keys name it


def committed_rows() -> list[dict[str, str]]:
    return [r for r in report.read_rows(COMMITTED) if r["dataset"] in DEFAULTS]


def _set(rows, where, **values) -> list[str]:
    """Set ``values`` on every row for which ``where(row)`` holds; the keys of the changed rows."""
    hit = []
    for r in rows:
        if where(r):
            changed = {c: v for c, v in values.items() if r[c] != v}
            if changed:
                r.update(changed)
                hit.append("/".join(r[k] for k in report.KEY))
    assert hit, "the fault matched no row of the committed registry"
    return hit


def is_(homework, workload, test):
    return lambda r: r["homework"] == homework and r["workload"] == workload and test(r["name"])


#: name -> (rows where the fault is planted, values it plants)
FAULTS = {
    "int8 classifier rows broken": (is_("hw2", "resnet18", lambda n: "int8" in n), {"accuracy": "0.5000", "f1": "0.4000"}),
    "structured fine-tunes lose 0.18": (is_("hw3", "resnet18", lambda n: n.startswith("structured") and n.endswith(" ft")),
                                        {"accuracy": -0.18}),
    "KD student degraded": (is_("hw6", "resnet18", lambda n: n == "student-kd-T2-a0.5"), {"accuracy": "0.8100"}),
}
#: the fine-tune made to do nothing (lr 1e-12 in train.finetune), as measured on the code of commit 46f126b,
#: when digits was the default; planted on fashion-mnist-small's rows they lie 0.05-0.49 below them
UNDONE_FINETUNE = {"structured l1 0.50 ft": "0.2361", "structured l2 0.50 ft": "0.2472",
                   "structured fpgm 0.50 ft": "0.3111", "structured l1 0.30 ft": "0.7028"}


def planted(fault: str) -> tuple[list[dict[str, str]], list[str]]:
    rows = copy.deepcopy(committed_rows())
    if fault == "fine-tune undone":
        hit = []
        for name, acc in UNDONE_FINETUNE.items():
            hit += _set(rows, is_("hw3", "resnet18", lambda n, name=name: n == name), accuracy=acc)
        return rows, hit
    if fault == "size doubled":
        row = next(r for r in rows if r["homework"] == "hw2" and r["name"] == "int8 openvino" and r["workload"] == "resnet18")
        row["size_mb"] = f"{2 * float(row['size_mb']):.4f}"
        return rows, ["/".join(row[k] for k in report.KEY)]
    if fault == "sparsity changed":
        return rows, _set(rows, is_("hw3", "yolov8n", lambda n: n == "unstructured global 0.50 ft"), sparsity="0.4500")
    where, values = FAULTS[fault]
    hit = []
    for r in rows:     # a float is a change of the committed value, a string the value planted
        if where(r):
            planted_ = {c: f"{float(r[c]) + v:.4f}" if isinstance(v, float) else v for c, v in values.items()}
            hit += _set([r], lambda _: True, **planted_)
    assert hit, "the fault matched no row of the committed registry"
    return rows, hit


ALL = [*FAULTS, "fine-tune undone", "size doubled", "sparsity changed"]


def test_the_unchanged_registry_reproduces_itself_under_both_profiles():
    rows = committed_rows()
    for profile in compare.PROFILES:
        assert compare.differences(rows, rows, profile_name=profile) == []


@pytest.mark.parametrize("fault", ALL)
def test_every_planted_fault_is_reported_on_the_same_cpu(fault):
    rows, hit = planted(fault)
    problems = compare.differences(committed_rows(), rows, profile_name="same-cpu")
    missed = [k for k in hit if not any(p.startswith(k + ":") for p in problems)]
    assert not missed, f"{fault}: not reported for {missed}"
    assert all(any(p.startswith(k + ":") for k in hit) for p in problems), "a row without a fault was reported"


#: faults inside a listed unstable row's measured cross-CPU spread (hw3's channel-pruned ResNet-18
#: moved 0.18 between the two CPUs and 0.29 over three seeds): on another CPU they cannot be told
#: from the CPU's own effect
LET_THROUGH_ON_ANOTHER_CPU = {f"hw3/resnet18/{D}/structured {c} {r} ft" for c in ("l1", "l2", "fpgm")
                              for r in ("0.10", "0.30", "0.50", "0.70")}   # every structured row


@pytest.mark.parametrize("fault", ALL)
def test_on_another_cpu_only_faults_inside_a_measured_spread_pass(fault):
    rows, hit = planted(fault)
    problems = compare.differences(committed_rows(), rows, profile_name="other-cpu")
    reported = {k for k in hit if any(p.startswith(k + ":") for p in problems)}
    expected = set(hit) - LET_THROUGH_ON_ANOTHER_CPU
    if fault == "fine-tune undone":      # 0.6583 -> 0.2361 etc. is beyond even the unstable spread
        expected |= {f"hw3/resnet18/{D}/structured l1 0.50 ft", f"hw3/resnet18/{D}/structured l2 0.50 ft",
                     f"hw3/resnet18/{D}/structured fpgm 0.50 ft"}
    assert reported == expected, f"{fault}: reported {sorted(reported)}, expected {sorted(expected)}"


def test_the_issue_eighteen_row_mutation_is_reported_row_by_row():
    """All three planted together (the maintainer's experiment): every degraded row named."""
    rows = copy.deepcopy(committed_rows())
    hit = []
    for where, values in FAULTS.values():
        hit += _set(rows, where, **values)
    problems = compare.differences(committed_rows(), rows, profile_name="same-cpu")
    assert all(any(p.startswith(k + ":") for p in problems) for k in hit)
    assert len(hit) >= 10
