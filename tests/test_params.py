import nbformat
import pytest

from common import params, run_all
from common.params import ParameterError

CELL = """WORKLOADS = ["resnet18"]
SEED = 0
SEEDS = [0, 1, 2]
THREADS = 2
EPOCHS = 5
FT_EPOCHS_DET = 0.5
LR = 0.05
TEMPERATURES = [2.0, 4.0]
FT_EPOCHS = {"resnet18": 1, "yolov8n": 0.5}
TRAIN_IMAGES = 600
DET_WORKERS = 2
NAME = "l1"
BENCHMARK = True
"""


@pytest.fixture
def notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(CELL), nbformat.v4.new_code_cell("print(1)")]
    nb.cells[0].metadata["tags"] = ["parameters"]
    path = tmp_path / "hw9_x.ipynb"
    nbformat.write(nb, str(path))
    return path


def _values(**over):
    ns = {}
    exec(CELL, ns)
    return {**ns, **over}


def test_the_defaults_pass_and_come_back(notebook):
    got = params.check(_values(), notebook)
    assert list(got) == list(params.defaults(notebook)) and got["FT_EPOCHS"] == {"resnet18": 1, "yolov8n": 0.5}


@pytest.mark.parametrize("over, message", [
    ({"SEED": "x"}, r"parameter SEED must be an int like its default 0, got 'x'"),
    ({"EPOCHS": -1}, r"parameter EPOCHS must be > 0, got -1"),
    ({"EPOCHS": 2.5}, r"parameter EPOCHS must be an int like its default 5, got 2.5"),
    ({"THREADS": 0}, r"parameter THREADS must be >= 1"),
    ({"SEEDS": [0, "1"]}, r"parameter SEEDS must be a list of ints like \[0, 1, 2\], got the element '1'"),
    ({"SEEDS": [0, -1]}, r"parameter SEEDS must be >= 0"),
    ({"LR": 0}, r"parameter LR must be > 0"),
    ({"FT_EPOCHS_DET": True}, r"parameter FT_EPOCHS_DET must be a number"),
    ({"BENCHMARK": 1}, r"parameter BENCHMARK must be a bool"),
    ({"FT_EPOCHS": {"resnet18": 1, "yolo": 2}}, r"parameter FT_EPOCHS has unknown keys \['yolo'\]; valid keys: \['resnet18', 'yolov8n'\]"),
    ({"FT_EPOCHS": {"resnet18": 0, "yolov8n": 0.5}}, r"parameter FT_EPOCHS must be > 0"),
    ({"FT_EPOCHS": {"resnet18": "1"}}, r"parameter FT_EPOCHS\['resnet18'\] must be an int"),
    ({"TRAIN_IMAGES": 0}, r"parameter TRAIN_IMAGES must be >= 1"),
    ({"DET_WORKERS": 0}, r"parameter DET_WORKERS must be >= 1"),
    ({"NAME": 3}, r"parameter NAME must be a string"),
    ({"WORKLOADS": ["bert"]}, r"parameter WORKLOADS: unknown workloads \['bert'\]; valid: \['resnet18', 'yolov8n'\]"),
    ({"WORKLOADS": []}, r"parameter WORKLOADS: unknown workloads \(none given\)"),
])
def test_a_bad_value_is_one_error_naming_the_parameter(notebook, over, message):
    with pytest.raises(ParameterError, match=message):
        params.check(_values(**over), notebook)


def test_ints_are_numbers_where_the_default_is_a_float(notebook):
    params.check(_values(FT_EPOCHS_DET=1, TEMPERATURES=[3, 4.5], LR=1), notebook)


def test_the_course_parameters_resolve_the_datasets_before_any_work(tmp_path):
    c = params.course({})
    assert c.datasets == {"resnet18": "fashion-mnist-small", "yolov8n": "shapes"}
    assert c.train["yolov8n"] == {"epochs": params.COURSE["YOLO_EPOCHS"], "weights": "scratch"}
    assert params.is_default({"SEED": 3}) and not params.is_default({"RESNET_EPOCHS": 1})
    with pytest.raises(ParameterError, match=r"YOLO_WEIGHTS must be one of \['scratch', 'yolov8n.pt'\]"):
        params.course({"YOLO_WEIGHTS": "yolov9.pt"})
    with pytest.raises(ParameterError, match=r"parameter RESNET_EPOCHS must be > 0"):
        params.course({"RESNET_EPOCHS": 0})
    from common.data import DatasetError
    with pytest.raises(DatasetError, match="ImageFolder directory not found"):
        params.course({"RESNET_DATASET": str(tmp_path / "missing")})


def test_device_is_resolved_and_set_before_any_work(monkeypatch):
    import torch

    from common import env

    monkeypatch.setattr(env, "_compute_device", "cpu")
    with pytest.raises(ParameterError, match=r"parameter DEVICE must be one of \['auto', 'cpu', 'cuda'\], got 'gpu'"):
        params.course({"DEVICE": "gpu"})
    with pytest.raises(ParameterError, match=r"parameter DEVICE must be a string"):
        params.course({"DEVICE": 0})
    assert params.course({"DEVICE": "cpu"}).device == "cpu" == env.compute_device()
    monkeypatch.delenv(env.DEVICE_ENV, raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert params.course({}).device == expected == env.compute_device()
    monkeypatch.setenv(env.DEVICE_ENV, "cpu")        # the test session's pin: "auto" is the CPU
    assert params.course({"DEVICE": "auto"}).device == "cpu"
    monkeypatch.setenv(env.DEVICE_ENV, "tpu")
    with pytest.raises(ParameterError, match=r"NNC_DEVICE='tpu'; choose cpu or cuda"):
        params.course({})
    monkeypatch.delenv(env.DEVICE_ENV)
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match=r"parameter DEVICE: device 'cuda' was asked for but torch "
                                                 r"sees no CUDA GPU; use 'cpu' or 'auto'"):
            params.course({"DEVICE": "cuda"})
        assert env.compute_device() == "cpu"     # a refused DEVICE changes nothing


def test_every_notebook_parameters_cell_holds_literals_that_pass_their_own_check():
    for nb in run_all.notebooks():
        d = params.defaults(nb)
        assert params.check(d, nb) == d, nb.name


def test_every_notebook_takes_the_course_parameters_with_the_course_defaults():
    for nb in run_all.notebooks():
        d = params.defaults(nb)
        assert {k: d.get(k) for k in params.COURSE} == params.COURSE, nb.name


def test_a_bad_value_stops_a_notebook_in_its_check_cell_before_any_data(tmp_path, monkeypatch):
    import papermill as pm

    from common.env import REPO_ROOT

    monkeypatch.setenv("NNC_RESULTS", str(tmp_path / "results"))
    book = REPO_ROOT / "hw6_distillation" / "hw6_distillation.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(book), str(tmp_path / "out.ipynb"), parameters={"SEED": "x"},
                            cwd=str(book.parent), progress_bar=False)
    assert e.value.ename == "ParameterError"
    assert "parameter SEED must be an int like its default 0, got 'x'" in e.value.evalue
    cells = nbformat.read(str(tmp_path / "out.ipynb"), 4).cells
    failed = next(i for i, c in enumerate(cells) if any(o.get("output_type") == "error" for o in c.get("outputs", [])))
    assert "params.check(globals()" in cells[failed].source          # the check cell, the first after the parameters
    assert not (tmp_path / "results").exists()                        # nothing was written


def test_each_homework_readme_lists_exactly_its_notebooks_parameters():
    import re

    for nb in run_all.notebooks():
        readme = nb.parent / "README.md"
        if nb.parent.name == "results":          # the capstone documents itself in its notebook
            continue
        sentence = re.search(r"Parameters[^:]*\):|Parameters:", readme.read_text())
        listed = re.findall(r"`([A-Z_]+)`", readme.read_text()[sentence.end():].split(".\n")[0])
        assert listed == list(params.defaults(nb)), readme
