"""The GPU command and the CUDA paths up to the GPU: plan, provider checks, skip notes, refusal on a CPU
machine. Nothing here needs a GPU; on a CUDA machine the skip-note tests that assume none are skipped."""

import pytest
import torch

from common import backends, gpu, memory

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the real rows run")


def test_the_plan_covers_every_runtime_and_batch_and_checks_its_input():
    plan = gpu.cases(("resnet18", "yolov8n"), (1, 32))
    assert len(plan) == (len(gpu.RUNTIMES) + len(gpu.RUNTIMES) + len(gpu.ENGINES)) * 2
    assert {(c["runtime"], c["precision"]) for c in plan if c["workload"] == "resnet18"} == set(gpu.RUNTIMES)
    assert {c["batch"] for c in plan} == {1, 32}
    with pytest.raises(ValueError, match="unknown workload"):
        gpu.cases(("resnet50",))
    with pytest.raises(ValueError, match=r"batches must be whole numbers >= 1, got \[0\]"):
        gpu.cases(("resnet18",), (0,))


@needs_no_cuda
def test_every_row_is_a_skip_note_without_cuda_and_the_command_writes_nothing(tmp_path, capsys):
    assert all(gpu.skip_reason(r, p) == "skipped: no CUDA" for r, p in gpu.RUNTIMES + gpu.ENGINES)
    assert gpu.main(["--workloads", "resnet18", "--out", str(tmp_path / "gpu")]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU here" in err and "resnet18 onnxruntime fp32 batch 32: skipped: no CUDA" in err
    assert not (tmp_path / "gpu").exists()


def test_skip_notes_name_the_missing_package_on_a_cuda_machine_without_it(monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)     # as on a GPU with the CPU-only onnxruntime
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert gpu.skip_reason("pytorch", "fp16") is None
    assert gpu.skip_reason("onnxruntime", "fp32") == ("skipped: onnxruntime has no CUDA provider (installed: "
                                                      "CPUExecutionProvider); install onnxruntime-gpu")
    assert gpu.skip_reason("tensorrt (onnxruntime)", "fp16").endswith(
        "no TensorRT provider (installed: CPUExecutionProvider); install onnxruntime-gpu and TensorRT (pip install tensorrt)")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert gpu.skip_reason("tensorrt (engine)", "int8") == (
        "skipped: the tensorrt package is not installed (pip install tensorrt)")
    # onnxruntime-gpu present: the provider check passes, and load() still refuses a provider that did not start
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert gpu.skip_reason("onnxruntime", "fp32") is None and gpu.skip_reason("tensorrt (onnxruntime)", "fp16") is None


def test_load_refuses_bad_precisions_providers_and_engines_off_cuda(tmp_path):
    with pytest.raises(ValueError, match=r"unknown precision 'int4'; choose one of \['fp32', 'fp16'\]"):
        backends.load(torch.nn.Linear(2, 2), precision="int4")
    with pytest.raises(ValueError, match="precision='fp16' is for PyTorch, TorchScript and ONNX Runtime"):
        backends.load(torch.nn.Linear(2, 2), precision="fp16")        # on the CPU
    with pytest.raises(ValueError, match=r"unknown onnxruntime provider 'rocm'; choose one of \['cuda', 'tensorrt'\]"):
        backends.load(torch.nn.Linear(2, 2), provider="rocm")
    with pytest.raises(ValueError, match="a TensorRT engine runs on CUDA only"):
        backends.load(tmp_path / "model.engine")
    assert backends.kind_of(tmp_path / "model.engine") == "tensorrt"


@needs_no_cuda
def test_a_row_without_cuda_is_its_note_and_nothing_else(tmp_path):
    from common import workloads

    bl = workloads.baseline("resnet18")
    row = gpu.measure_case(bl, {"runtime": "onnxruntime", "precision": "fp32", "batch": 32}, tmp_path)
    assert row == {"workload": "resnet18", "dataset": bl.config.dataset, "runtime": "onnxruntime", "precision": "fp32",
                   "batch": 32, "notes": "skipped: no CUDA"}
    assert not any(tmp_path.iterdir())                 # nothing exported for a row that cannot run


def test_the_gpu_tables_are_written_whole_with_their_own_stamp(tmp_path):
    rows = [{"workload": "resnet18", "dataset": "digits", "runtime": "pytorch", "precision": "fp16", "batch": 32,
             "latency_gpu_ms": 1.5, "latency_gpu_p90_ms": 1.7, "throughput_ips": 21333.3, "vram_mb": 85.0,
             "parity": 1e-3, "notes": "n"},
            {"workload": "resnet18", "dataset": "digits", "runtime": "onnxruntime", "precision": "fp32", "batch": 1,
             "notes": "skipped: onnxruntime has no CUDA provider"}]
    train = [{"workload": "resnet18", "dataset": "digits", "device": "cuda", "seconds_per_epoch": 0.8, "threads": 2}]
    gpu.write(tmp_path, rows, train)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "environment.md", "gpu.csv", "training.csv"]
    text = (tmp_path / "README.md").read_text()
    assert "| resnet18 | digits | onnxruntime | fp32 | 1 |  |  |  |  |  | skipped: onnxruntime has no CUDA provider |" in text
    assert "GPU: " in (tmp_path / "environment.md").read_text() and "CUDA" in text


def test_the_memory_child_passes_load_options_through(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    torch.save(model, tmp_path / "m.pt")
    stats = memory.peak_memory(tmp_path / "m.pt", (1, 3, 8, 8), threads=1, runs=2, precision="fp32")
    assert stats.vram_mb is None and stats.peak_rss_mb > stats.baseline_rss_mb > 0
    with pytest.raises(RuntimeError, match="precision='fp16' is for PyTorch"):
        memory.peak_memory(tmp_path / "m.pt", (1, 3, 8, 8), threads=1, runs=2, precision="fp16")


def test_the_results_readme_shows_the_gpu_tables_or_says_there_are_none(tmp_path):
    from common import summary

    assert "No GPU table yet" in "\n".join(summary.gpu_section(tmp_path / "gpu"))
    gpu.write(tmp_path / "gpu", [{"workload": "yolov8n", "dataset": "shapes", "runtime": "pytorch", "precision": "fp32",
                                  "batch": 1, "latency_gpu_ms": 5.3, "notes": "n"}],
              [{"workload": "yolov8n", "dataset": "shapes", "device": "cpu", "seconds_per_epoch": 7.5, "threads": 2}])
    text = "\n".join(summary.gpu_section(tmp_path / "gpu"))
    assert "| yolov8n | shapes | pytorch | fp32 | 1 | 5.3 |" in text and "| yolov8n | shapes | cpu | 7.5 | 2 |" in text
    assert "GPU: " in text and "No GPU table yet" not in text


@pytest.mark.parametrize("workload,runtimes", [
    ("resnet18", [("pytorch", "fp32"), ("torchscript", "fp32"), ("onnxruntime", "fp32")]),
    ("yolov8n", [("onnxruntime", "fp32")]),
])
def test_a_row_is_measured_end_to_end_in_a_cpu_rehearsal(tmp_path, workload, runtimes):
    """The steps of a GPU row (export at the row's batch, parity against float32 PyTorch, one timing
    harness, the memory child) run on the CPU, so they are not first run on a GPU machine."""
    from common import workloads

    bl = workloads.baseline(workload)
    for runtime, precision in runtimes:
        row = gpu.measure_case(bl, {"runtime": runtime, "precision": precision, "batch": 2}, tmp_path,
                               warmup=1, repeats=3, _rehearse_on_cpu=True)
        assert row["batch"] == 2 and row["latency_gpu_ms"] > 0 and row["throughput_ips"] > 0, row
        assert row["parity"] < 1e-4, row                  # fp32 runtimes agree with PyTorch on the same images
        assert row["vram_mb"] is None and "cudaMemGetInfo" in row["notes"]


def test_each_detector_artifact_has_its_own_folder_and_the_onnx_one_is_shared(tmp_path, monkeypatch):
    """A TensorRT engine is never mistaken for the ONNX file of the same batch (or another precision's engine)."""
    from types import SimpleNamespace

    from common import workloads

    exported = []

    class FakeYolo:
        def __init__(self, ckpt):
            self.folder = ckpt.parent

        def export(self, **args):
            exported.append(args)
            path = self.folder / f"model.{args['format']}"
            path.write_text("x")
            return str(path)

    monkeypatch.setattr(workloads, "yolo", FakeYolo)
    ckpt = tmp_path / "ultralytics.pt"
    ckpt.write_text("ckpt")
    bl = SimpleNamespace(config=SimpleNamespace(workload="yolov8n", img_size=128), data="d.yaml",
                         path=tmp_path / "model.pt", ultralytics_checkpoint=ckpt)
    paths = {(r, p): gpu._artifact(bl, r, p, 32, tmp_path / "out") for r, p in gpu.RUNTIMES[2:] + gpu.ENGINES}
    assert paths["onnxruntime", "fp32"] == paths["tensorrt (onnxruntime)", "fp16"]
    assert len(set(paths.values())) == 1 + 1 + 3        # torchscript, the shared ONNX, three engines
    assert len(exported) == 5 and {a["batch"] for a in exported} == {32}
    assert [a.get("int8") for a in exported if a["format"] == "engine"] == [False, False, True]
    assert all(a["device"] == ("cpu" if a["format"] == "onnx" else "0") for a in exported)


def test_hw5s_tensorrt_row_says_what_is_missing(monkeypatch):
    from common import export

    if not torch.cuda.is_available():
        assert export._missing_runtime("tensorrt") == "skipped: no CUDA (TensorRT needs an NVIDIA GPU)"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert export._missing_runtime("tensorrt") == "skipped: the tensorrt package is not installed (pip install tensorrt)"
