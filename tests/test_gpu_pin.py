"""``NNC_DEVICE=cpu`` keeps every GPU measurement off even where CUDA is present: no GPU latency,
no VRAM, no fp16-on-CUDA row, nothing loaded on the GPU. CUDA is faked here, so no GPU is needed
(and none is touched). Each test sets or unsets ``NNC_DEVICE`` itself: the root conftest pins it
for the whole session."""

import pytest
import torch

from common import backends, env, measure, memory, quantize

PIN_REASON = "NNC_DEVICE=cpu pins this session to the CPU"


class TouchedTheGpu(AssertionError):
    """Raised by the fakes below wherever something would go to the GPU."""


@pytest.fixture
def fake_cuda(monkeypatch):
    """CUDA present as far as torch.cuda.is_available() says."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@pytest.fixture
def no_gpu_loads(monkeypatch):
    """backends.load and memory.peak_memory raise when asked for device='cuda'."""
    real_load, real_peak = backends.load, memory.peak_memory

    def load(artifact, *args, device="cpu", **kwargs):
        if device != "cpu":
            raise TouchedTheGpu(f"backends.load(device={device!r}) was called")
        return real_load(artifact, *args, device=device, **kwargs)

    def peak_memory(path, input_shape, *args, device="cpu", **kwargs):
        if device != "cpu":
            raise TouchedTheGpu(f"memory.peak_memory(device={device!r}) was called")
        return real_peak(path, input_shape, *args, device=device, **kwargs)

    monkeypatch.setattr(backends, "load", load)
    monkeypatch.setattr(memory, "peak_memory", peak_memory)


@pytest.fixture
def tiny_model(tmp_path):
    """A small PyTorch model file (saved whole, input 1x4), a format measure() would time on CUDA."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    path = tmp_path / "tiny.pt"
    torch.save(model, path)
    assert backends.kind_of(path) == "pytorch"
    return path


def run_measure(path):
    return measure.measure(path, (1, 4), threads=1, warmup=1, repeats=3, ram=False, gpu=True, label="tiny")


# (a) the pin wins over a present GPU


def test_the_pin_turns_gpu_measurements_off_and_auto_means_cpu(monkeypatch, fake_cuda):
    monkeypatch.setenv("NNC_DEVICE", "cpu")
    assert env.gpu_measurements() == (False, PIN_REASON)
    assert "NNC_DEVICE" in env.gpu_measurements()[1]
    assert env.device("auto") == "cpu"


def test_without_the_pin_a_present_gpu_is_used(monkeypatch, fake_cuda):
    """The control of the test above: the fake alone makes 'auto' CUDA and GPU rows allowed."""
    monkeypatch.delenv("NNC_DEVICE", raising=False)
    assert env.gpu_measurements() == (True, "")
    assert env.device("auto") == "cuda"


# (b) measure() times nothing and loads nothing on the GPU


def test_measure_skips_the_gpu_under_the_pin(monkeypatch, fake_cuda, no_gpu_loads, tiny_model):
    monkeypatch.setenv("NNC_DEVICE", "cpu")
    monkeypatch.setenv("NNC_QUICK_TIMING", "1")
    m = run_measure(tiny_model)
    assert m.gpu is None and m.vram_mb is None
    assert f"gpu: skipped ({PIN_REASON})" in m.notes
    assert not any(n.startswith("vram:") for n in m.notes)
    row = m.row()
    assert row["latency_gpu_ms"] is None and row["vram_mb"] is None
    assert f"gpu: skipped ({PIN_REASON})" in row["notes"]
    assert m.cpu.repeats >= 1 and m.cpu.median_ms > 0      # the CPU figures are still measured


def test_measure_without_the_pin_would_load_on_the_gpu(monkeypatch, fake_cuda, no_gpu_loads, tiny_model):
    """The control of the test above: with the pin gone, measure() reaches the (faked) GPU load."""
    monkeypatch.delenv("NNC_DEVICE", raising=False)
    monkeypatch.setenv("NNC_QUICK_TIMING", "1")
    with pytest.raises(TouchedTheGpu, match=r"backends.load\(device='cuda'\)"):
        run_measure(tiny_model)


# (c) no fp16-on-CUDA row


class NoGpuModel:
    """Stands in for bl.model: moving it to half precision or to the GPU raises."""

    def half(self):
        raise TouchedTheGpu("model.half() was called")

    def cuda(self, *args, **kwargs):
        raise TouchedTheGpu("model.cuda() was called")

    def to(self, *args, **kwargs):
        raise TouchedTheGpu("model.to() was called")


class DummyBaseline:
    model = NoGpuModel()
    input_shape = (1, 3, 8, 8)


def test_cuda_fp16_returns_none_under_the_pin(monkeypatch, fake_cuda):
    monkeypatch.setenv("NNC_DEVICE", "cpu")
    assert quantize.cuda_fp16(DummyBaseline(), warmup=1, repeats=1) is None


def test_cuda_fp16_without_the_pin_would_move_the_model(monkeypatch, fake_cuda):
    """The control of the test above: the dummy does notice when the model is moved."""
    monkeypatch.delenv("NNC_DEVICE", raising=False)
    with pytest.raises(TouchedTheGpu, match=r"model.half\(\) was called"):
        quantize.cuda_fp16(DummyBaseline(), warmup=1, repeats=1)


# (d) no pin and no CUDA


def test_no_cuda_without_the_pin(monkeypatch):
    monkeypatch.delenv("NNC_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert env.gpu_measurements() == (False, "no CUDA")
    assert env.device("auto") == "cpu"


def test_cuda_fp16_returns_none_without_cuda(monkeypatch):
    monkeypatch.delenv("NNC_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert quantize.cuda_fp16(DummyBaseline(), warmup=1, repeats=1) is None
