import csv
import json

import nbformat
import pytest

from common import measure, run_all
from common.env import REPO_ROOT


def test_notebooks_are_found_in_homework_order():
    books = run_all.notebooks()
    assert books and books[0].name == "hw1_baseline.ipynb"
    homeworks = [p for p in books if p.stem.startswith("hw")]
    numbers = [int(p.stem[2:].split("_")[0]) for p in homeworks]
    assert numbers == sorted(numbers)
    assert books[len(homeworks):] == [REPO_ROOT / "results" / "capstone.ipynb"]  # the capstone runs last
    assert run_all.select(["hw1"]) == [books[0]] == run_all.select(["hw1_baseline"])
    with pytest.raises(SystemExit, match=r"unknown homework\(s\) \['hw9'\]; valid: hw1"):
        run_all.select(["hw9"])


def test_parameters_are_read_as_literals():
    got = run_all.parse_parameters([["EPOCHS", "3"], ["LR", "0.5"], ["NAMES", "[a, b]"], ["D", "digits"]])
    assert got == {"EPOCHS": 3, "LR": 0.5, "NAMES": ["a", "b"], "D": "digits"}


def _notebook(path, sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.cells[0].metadata["tags"] = ["parameters"]
    path.parent.mkdir(parents=True)
    nbformat.write(nb, str(path))
    return path.read_bytes()


def test_a_failing_notebook_stops_the_run_names_the_cell_and_is_left_untouched(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NNC_ARTIFACTS", str(tmp_path / "artifacts"))
    good = tmp_path / "hw1_ok" / "hw1_ok.ipynb"
    bad = tmp_path / "hw2_bad" / "hw2_bad.ipynb"
    later = tmp_path / "hw3_later" / "hw3_later.ipynb"
    _notebook(good, ["X = 1", "print(X * 2)"])
    before = _notebook(bad, ["X = 1", "y = 2", "raise ValueError('broken on purpose')"])
    _notebook(later, ["X = 1"])
    books = run_all.notebooks(tmp_path)
    assert books == [good, bad, later]
    with pytest.raises(SystemExit) as exit_info:
        run_all.run(books, {"X": 5})
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "FAILED hw2_bad.ipynb in cell" in err and "ValueError: broken on purpose" in err
    assert bad.read_bytes() == before                     # nothing half-written in place
    assert (tmp_path / "artifacts" / "failed" / "hw2_bad.ipynb").exists()
    assert "10" in json.dumps(nbformat.read(str(good), 4).cells[-1].outputs)  # X injected, ran
    assert not nbformat.read(str(later), 4).cells[0].get("outputs")  # never reached
    assert sorted(p.name for p in bad.parent.iterdir()) == ["hw2_bad.ipynb"]


def test_papermill_parameters_take_effect_in_hw1(tmp_path, monkeypatch):
    import papermill as pm

    monkeypatch.setenv("NNC_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv(measure.QUICK_TIMING_ENV, "0")   # time in full, so that REPEATS shows in the notes
    out = tmp_path / "hw1.ipynb"
    params = {"WORKLOADS": ["resnet18"], "RESNET_DATASET": "digits", "RESNET_EPOCHS": 1, "WARMUP": 1, "REPEATS": 5}
    pm.execute_notebook(str(REPO_ROOT / "hw1_baseline" / "hw1_baseline.ipynb"), str(out),
                        parameters=params, cwd=str(REPO_ROOT / "hw1_baseline"), progress_bar=False)
    nb = nbformat.read(str(out), 4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "RESNET_EPOCHS = 1" in injected[0].source
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "resnet18-digits-32px-e1-" in text            # the 1-epoch recipe on the built-in data was trained / loaded
    assert "yolov8n test:" not in text and "yolov8n: " not in text  # only the chosen workload
    with open(tmp_path / "results" / "experiments.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["workload"], r["name"]) for r in rows] == [("resnet18", "baseline")]
    assert rows[0]["notes"].startswith("1 epochs") and "cpu: paired comparison (common.speed)" in rows[0]["notes"]
    assert rows[0]["speedup_vs"] == "baseline"        # timed by the paired harness, against itself (A/A)


def test_a_parameter_a_notebook_does_not_declare_stops_the_run_before_it_starts(tmp_path, capsys):
    first = tmp_path / "hw1_a" / "hw1_a.ipynb"
    second = tmp_path / "hw2_b" / "hw2_b.ipynb"
    _notebook(first, ["X = 1\nY = 2", "print(X)"])
    before = _notebook(second, ["X = 1", "print(X)"])
    books = run_all.notebooks(tmp_path)
    assert run_all.declared_parameters(first) == ["X", "Y"]
    with pytest.raises(SystemExit, match=r"hw2_b.ipynb does not take Y; its parameters: X") as e:
        run_all.run(books, {"X": 3, "Y": 4})
    assert "hw1_a" not in str(e.value)                     # it takes both
    assert not nbformat.read(str(first), 4).cells[0].get("outputs")   # nothing ran
    assert second.read_bytes() == before
    run_all.check_parameters(books, {"X": 3})             # declared everywhere: accepted


def test_every_notebook_declares_the_parameters_the_readme_passes_to_all():
    # `make homeworks ARGS="-p SEED 1"` reaches every notebook; each one must declare it
    run_all.check_parameters(run_all.notebooks(), {"SEED": 1, "THREADS": 2, "WARMUP": 1, "REPEATS": 5})


def test_docs_state_the_compared_cell_counts_as_the_notebooks_have_them():
    readme = (run_all.REPO_ROOT / "docs" / "testing.md").read_text()
    assert run_all.nbval_counts() in " ".join(readme.split()), \
        "docs/testing.md's count of nbval-compared cells is out of date: paste common.run_all.nbval_counts()"


def test_tidy_outputs_leaves_what_a_reader_sees():
    import sys

    from common.env import REPO_ROOT
    from common.run_all import tidy_outputs

    warn = f"{sys.prefix}/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found.\n  from x import y\n"
    nb = {"cells": [
        {"cell_type": "code", "metadata": {}, "outputs": [
            {"output_type": "stream", "name": "stderr", "text": warn + "\rbar:   0%| 0/3"},
            {"output_type": "stream", "name": "stdout", "text": f"saved {REPO_ROOT}/results/x.csv\n"},
            {"output_type": "stream", "name": "stderr", "text": "\rbar:  50%| 1/3"},
            {"output_type": "stream", "name": "stderr", "text": ["\rbar: 100%| 3/3", "\n"]},
            {"output_type": "stream", "name": "stderr",
             "text": "W1201 11:58:45.490000 30367 torch/utils/_pytree.py:630] <enum> deprecated\n"
                     "WARNING:root:The model x.tflite already exists\n"
                     "INFO:nncf:34 ignored nodes were found by names in the NNCFGraph\n"
                     "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                     "I0000 00:00:1796222517.027199    9894 port.cc:153] oneDNN custom operations are on.\n"
                     "Generating Quantization Parameters:: 100%|##| 258/258 [00:00<00:00, 6165.28it/s]\n"
                     "Applying Transformations to tensors:: 100%|##| 415/415 [00:00<00:00, 99283.38it/s]\n"},
            {"output_type": "display_data", "data": {"text/plain": "(00:00) [START] LiteRT-Torch Convert",
             "text/html": '<pre style="white-space:pre;overflow-x:auto;line-height:normal;font-family:Menlo">x</pre>'}},
            {"output_type": "execute_result", "data": {"text/plain": "1"}}]},
        {"cell_type": "code", "metadata": {"tags": ["nbval-check-output"]}, "outputs": [
            {"output_type": "stream", "name": "stdout", "text": f"{REPO_ROOT}/a\r"},
            {"output_type": "stream", "name": "stdout", "text": "b\n"}]},
        {"cell_type": "markdown", "source": "x"}]}
    out = tidy_outputs(nb)["cells"]
    first = out[0]["outputs"]
    assert [o["output_type"] for o in first] == ["stream", "stream", "execute_result"]
    assert first[0]["text"] == "bar: 100%| 3/3\n"                  # warning gone, bar on one line
    assert first[1]["text"] == "saved ./results/x.csv\n"
    assert out[1]["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "b\n"}]  # compared: only merged


def test_a_warning_printed_into_a_progress_bar_frame_is_dropped_with_the_frame():
    import sys

    from common.run_all import tidy_outputs

    text = (f"measuring:  33%|###| 11/33 [00:24<00:19,  1.14it/s]{sys.prefix}/lib/python3.11/site-packages/"
            "torch/_utils.py:466: UserWarning: TypedStorage is deprecated.\n  device=storage.device,\n"
            "measuring: 100%|#####| 33/33 [00:40<00:00,  1.23s/it]\n")
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [
        {"output_type": "stream", "name": "stderr", "text": text}]}]}
    assert tidy_outputs(nb)["cells"][0]["outputs"][0]["text"] == "measuring: 100%|#####| 33/33 [00:40<00:00,  1.23s/it]\n"


def test_what_tidy_drops_goes_to_the_runs_log_and_noise_counts_it():
    from common.run_all import noise, tidy_outputs

    text = ("Model name: ./artifacts/hw2/resnet18/tflite/resnet18.tflite\nOriginal model size: 42.64 MiB\n"
            "Quantized model size: 21.36 MiB\nQuantization Ratio: 0.50 (2.0x smaller)\nTotal time: 161.98 ms\n"
            "165 __module.model.22/aten::div/Divide\nour own line: 2.0x smaller\n")
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [
        {"output_type": "stream", "name": "stdout", "text": text},
        {"output_type": "stream", "name": "stderr", "text": "\rbar 1/2\rbar 2/2\n/tmp/x.py:1: UserWarning: y\n  z\n"}]}]}
    before = noise(nb)
    assert before["library"] == 7 and before["frames"] == 2 and before["paths"] == 1 and before["lines"] == 10
    removed = []
    out = tidy_outputs(nb, removed)
    assert [o["text"] for o in out["cells"][0]["outputs"]] == ["our own line: 2.0x smaller\n", "bar 2/2\n"]
    assert len(removed) == 8 and removed[0] == "cell 0: Model name: ./artifacts/hw2/resnet18/tflite/resnet18.tflite"
    assert noise(out) == {"lines": 2, "library": 0, "frames": 0, "paths": 0, "largest": len("our own line: 2.0x smaller\n") + 8}


@pytest.mark.parametrize("path", run_all.notebooks(), ids=lambda p: p.stem)
def test_a_committed_notebook_reads_quietly(path):
    """What reviewers read: library noise at most 5 % of the output lines, no machine path, no cell
    output over 20,000 characters, no image over 200 KB."""
    import base64
    import json

    nb = json.loads(path.read_text())
    n = run_all.noise(nb)
    assert n["library"] + n["frames"] <= 0.05 * max(n["lines"], 1), n
    assert n["paths"] == 0 and n["largest"] < 20_000, n
    images = {(i, len(base64.b64decode("".join(v)))) for i, c in enumerate(nb["cells"]) for o in c.get("outputs", [])
              for k, v in o.get("data", {}).items() if k.startswith("image/") and k != "image/svg+xml"}
    assert all(size < 200_000 for _, size in images), sorted(images, key=lambda t: -t[1])[:3]


def test_text_printed_between_tables_stays_between_them():
    from common.run_all import tidy_outputs

    table = {"output_type": "display_data", "data": {"text/plain": "T"}}
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [
        {"output_type": "stream", "name": "stdout", "text": "resnet18:\n"}, {"output_type": "stream", "name": "stderr", "text": "\rbar 1/2"},
        {"output_type": "stream", "name": "stderr", "text": "\rbar 2/2\n"}, table,
        {"output_type": "stream", "name": "stdout", "text": "yolov8n:\n"}, table]}]}
    out = tidy_outputs(nb)["cells"][0]["outputs"]
    assert [o.get("text", o.get("data", {}).get("text/plain")) for o in out] == ["resnet18:\n", "bar 2/2\n", "T", "yolov8n:\n", "T"]
