"""The check profile (common.profiles): make test re-executes the longest notebooks with smaller,
declared parameters and holds them against committed check rows; budgets are not asserted there."""

import json

import pytest

from common import params, profiles, registry, run_all

BOOKS = {profiles.homework(p): p for p in run_all.notebooks()}


def test_every_check_parameter_is_declared_by_its_notebook_and_differs_from_the_course():
    assert set(profiles.CHECK) <= set(BOOKS) and "hw1" not in profiles.CHECK
    for hw, overrides in profiles.CHECK.items():
        declared = run_all.declared_parameters(BOOKS[hw])
        assert set(overrides) <= set(declared), (hw, set(overrides) - set(declared))
        run_all.check_parameters([BOOKS[hw]], overrides)        # the check make homeworks -p applies
        assert not set(overrides) & set(params.COURSE), f"{hw}: the check profile keeps the course's baselines"


def test_the_check_copy_injects_the_profile_after_the_parameters_and_compares_no_output(tmp_path, monkeypatch):
    nb = BOOKS["hw3"]
    before = nb.read_bytes()
    copy = profiles.write_copy(nb)
    try:
        assert copy == nb.with_name(".check-hw3_pruning.ipynb") and nb.read_bytes() == before
        cells = json.loads(copy.read_text())["cells"]
        tags = [c.get("metadata", {}).get("tags", []) for c in cells]
        at = next(i for i, t in enumerate(tags) if "parameters" in t)
        assert "injected-parameters" in tags[at + 1] and "check-profile" in tags[at + 2]
        assert "SPARSITIES = [0.5, 0.9]" in "".join(cells[at + 1]["source"])
        assert not any("nbval-check-output" in t for t in tags)
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code")
        assert profiles.homework(copy) == "hw3"
    finally:
        copy.unlink()


def test_budgets_are_asserted_at_course_scale_only(monkeypatch):
    monkeypatch.delenv(profiles.PROFILE_ENV, raising=False)
    assert profiles.active() == "course" and params.is_default({})
    monkeypatch.setenv(profiles.PROFILE_ENV, "check")
    assert not params.is_default({})
    monkeypatch.setenv(profiles.PROFILE_ENV, "tiny")
    with pytest.raises(ValueError, match="course, check"):
        profiles.active()


def test_each_homework_is_held_against_the_rows_of_the_scale_it_ran_at(monkeypatch):
    monkeypatch.delenv(profiles.FULL_ENV, raising=False)
    assert profiles.registry("hw3") == profiles.CHECK_DIR / "experiments.csv"
    assert profiles.registry("hw1") == profiles.registry("hw5") == run_all.REPO_ROOT / "results" / "experiments.csv"
    monkeypatch.setenv(profiles.FULL_ENV, "1")
    assert profiles.registry("hw3") == run_all.REPO_ROOT / "results" / "experiments.csv"


def test_the_committed_check_rows_cover_exactly_the_profiled_homeworks():
    rows = registry.read_rows(profiles.CHECK_DIR / "experiments.csv")
    assert {r["homework"] for r in rows} == set(profiles.CHECK)
    assert (profiles.CHECK_DIR / "machine.json").exists()   # the tolerances make test applies to them


def test_the_check_run_refuses_parameters_and_homeworks_without_a_profile(capsys):
    with pytest.raises(SystemExit, match="drop -p"):
        run_all.main(["--profile", "check", "--only", "hw3", "-p", "SEED", "1"])
    with pytest.raises(SystemExit, match="has a check profile"):
        run_all.main(["--profile", "check", "--only", "hw1"])
