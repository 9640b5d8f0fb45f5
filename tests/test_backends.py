import numpy as np
import pytest
import torch

from common import backends, memory


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(8, 5)).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("exported")
    model = tiny_model()
    x = torch.randn(1, 3, 16, 16)
    torch.save(model, d / "model.pt")
    torch.jit.trace(model, x).save(str(d / "model.torchscript"))
    torch.onnx.export(model, (x,), str(d / "model.onnx"), input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    import openvino as ov

    # save_model compresses weights to fp16 unless told otherwise
    ov.save_model(ov.convert_model(str(d / "model.onnx")), str(d / "ov" / "model.xml"), compress_to_fp16=False)
    import litert_torch

    litert_torch.convert(model, (x,)).export(str(d / "model.tflite"))  # batch 1, NCHW signature
    return model, d


@pytest.mark.parametrize("name, kind", [("model.pt", "pytorch"), ("model.torchscript", "torchscript"),
                                        ("model.onnx", "onnxruntime"), ("ov", "openvino")])
def test_every_backend_gives_the_same_outputs(exported, name, kind):
    model, d = exported
    x = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    b = backends.load(d / name, threads=1)
    assert b.name == kind and b.threads == 1
    np.testing.assert_allclose(b(x), ref, atol=1e-5)


def test_tflite_backend_via_litert(exported):
    model, d = exported
    x = np.random.default_rng(1).standard_normal((3, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    b = backends.load(d / "model.tflite", threads=1)
    assert b.name == "tflite"
    np.testing.assert_allclose(b(x), ref, atol=1e-5)  # batch 3 on a batch-1 model: resized


def test_unknown_formats_and_arguments(tmp_path):
    with pytest.raises(ValueError, match="supported: a torch.nn.Module or files ending in"):
        backends.kind_of(tmp_path / "model.caffemodel")
    with pytest.raises(ValueError, match="threads must be >= 1"):
        backends.load(tiny_model(), threads=0)
    with pytest.raises(ValueError, match="choose cpu or cuda"):
        backends.load(tiny_model(), device="tpu")


def test_peak_memory_runs_in_a_fresh_process(exported):
    _, d = exported
    m = memory.peak_memory(d / "model.onnx", (1, 3, 16, 16), threads=1, runs=3)
    assert m.peak_rss_mb > m.baseline_rss_mb > 5
    assert m.vram_mb is None and m.runs == 3
    with pytest.raises(RuntimeError, match="memory measurement of missing.onnx failed"):
        memory.peak_memory(d / "missing.onnx", (1, 3, 16, 16))


def test_unoptimized_sessions_are_an_onnx_runtime_option_only(tmp_path):
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)).eval()
    with pytest.raises(ValueError, match="optimize=False applies to ONNX Runtime only, not to pytorch"):
        backends.load(model, optimize=False)
    path = tmp_path / "m.onnx"
    x = torch.randn(1, 3, 8, 8)
    torch.onnx.export(model, (x,), str(path), input_names=["images"], opset_version=17, dynamo=False)
    ref = model(x).detach().numpy()
    for optimize in (True, False):
        assert abs(backends.load(path, threads=1, optimize=optimize)(x.numpy()) - ref).max() < 1e-5


def test_onnx_runtime_never_runs_on_the_cpu_when_cuda_was_asked(exported, monkeypatch):
    import onnxruntime as ort

    _, d = exported
    if backends.onnxruntime_cuda_missing() is None:
        pytest.skip("onnxruntime has a CUDA provider here: the real path runs in measure")
    with pytest.raises(backends.DeviceUnavailable, match="no CUDA provider .*install onnxruntime-gpu"):
        backends.load(d / "model.onnx", device="cuda")
    # a build that lists the provider but cannot start it (missing CUDA libraries) falls back to the
    # CPU inside InferenceSession: that, too, is refused
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(backends.DeviceUnavailable, match="CUDA provider did not start"):
        backends.load(d / "model.onnx", device="cuda")


def test_measure_writes_no_gpu_figure_for_a_runtime_that_cannot_use_the_gpu(exported, monkeypatch):
    from common import measure

    _, d = exported
    if backends.onnxruntime_cuda_missing() is None:
        pytest.skip("onnxruntime has a CUDA provider here")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)   # as on a CUDA machine without onnxruntime-gpu
    monkeypatch.delenv("NNC_DEVICE", raising=False)    # outside the test session's CPU pin (tests/test_gpu_pin.py has the pin)
    m = measure.measure(d / "model.onnx", (1, 3, 16, 16), threads=1, warmup=1, repeats=3, ram=False)
    row = m.row()
    assert row["latency_gpu_ms"] is None and row["vram_mb"] is None
    assert "gpu: skipped (onnxruntime has no CUDA provider" in row["notes"]
    m = measure.measure(d / "ov", (1, 3, 16, 16), threads=1, warmup=1, repeats=3, ram=False)
    assert m.row()["latency_gpu_ms"] is None and "gpu: skipped (openvino runs on the CPU here)" in m.row()["notes"]


def test_measure_times_briefly_and_skips_ram_under_the_test_session_and_measures_in_full_otherwise(exported, monkeypatch):
    from common import measure

    _, d = exported
    monkeypatch.setenv(measure.QUICK_TIMING_ENV, "1")      # what conftest.py sets for make test
    m = measure.measure(d / "model.onnx", (1, 3, 16, 16), threads=1, warmup=5, repeats=40, gpu=False)
    row = m.row()
    assert (m.cpu.repeats, m.cpu.warmup) == (measure.QUICK_REPEATS, measure.QUICK_WARMUP)
    assert f"median of {measure.QUICK_REPEATS} runs after {measure.QUICK_WARMUP} warm-up" in row["notes"]
    assert "quick timing" in row["notes"]
    assert row["ram_mb"] is None and "ram: not measured" in row["notes"]
    assert m.ram.runs == 0 and m.ram.peak_rss_mb != m.ram.peak_rss_mb   # NaN: a notebook's print still works
    monkeypatch.setenv(measure.QUICK_TIMING_ENV, "0")      # make homeworks: the full count, RAM measured
    m = measure.measure(d / "model.onnx", (1, 3, 16, 16), threads=1, warmup=5, repeats=40, gpu=False)
    row = m.row()
    assert (m.cpu.repeats, m.cpu.warmup) == (40, 5) and "quick timing" not in row["notes"]
    assert row["ram_mb"] == m.ram.peak_rss_mb > m.ram.baseline_rss_mb > 5 and "ram:" not in row["notes"]


def test_every_runtime_kind_has_one_loader_and_options_are_checked_before_it_runs(tmp_path, monkeypatch):
    assert set(backends.LOADERS) == set(backends.SUFFIX_KIND.values())
    called = []
    monkeypatch.setitem(backends.LOADERS, "onnxruntime", lambda *a, **k: called.append(k))
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")
    with pytest.raises(ValueError, match="choose f32, bf16 or f16"):
        backends.load(onnx, openvino_precision="int4")
    with pytest.raises(ValueError, match="through provider='tensorrt'"):
        backends.load(onnx, device="cuda", precision="fp16", provider="cuda")
    assert not called                                   # refused before the runtime's loader ran
    backends.load(onnx, threads=3)
    assert called[0]["threads"] == 3 and called[0]["kind"] == "onnxruntime"


def test_loading_and_measuring_leave_the_callers_torch_threads_alone(exported):
    """A notebook times on THREADS = 1 but trains on 2: loading a model with ``threads=1`` or measuring
    it must not drop the kernel's own thread count (it once made every later fine-tune single-threaded)."""
    import torch

    from common import measure

    _, d = exported
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        backends.load(d / "model.pt", threads=1)
        assert torch.get_num_threads() == 2
        measure.measure(d / "model.pt", (1, 3, 16, 16), threads=1, warmup=1, repeats=3, ram=False, gpu=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
