"""One inference interface over every runtime, so that evaluation and timing treat them alike.

``load(artifact, threads=...)`` takes a ``torch.nn.Module``, a pickled module or an
ultralytics checkpoint (``.pt``/``.pth``), or the path of an exported model (TorchScript ``.torchscript``/``.ts``, ONNX ``.onnx``, OpenVINO ``.xml`` or its folder,
TFLite ``.tflite``) and returns a :class:`Backend`: ``prepare(np.ndarray)`` converts the
input once, ``run(prepared)`` is what the latency harness times, ``__call__`` does both and
returns the first output as a numpy array. Every backend gets the same thread count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from common.env import DEFAULT_THREADS

SUFFIX_KIND = {".pt": "pytorch", ".pth": "pytorch", ".torchscript": "torchscript",
               ".ts": "torchscript", ".onnx": "onnxruntime",
               ".xml": "openvino", ".tflite": "tflite", ".engine": "tensorrt"}
#: ONNX Runtime's execution provider for each ``provider=`` of :func:`load` on CUDA
ORT_PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
PRECISIONS = ("fp32", "fp16")


@dataclass
class Backend:
    name: str
    threads: int
    device: str
    prepare: Callable[[np.ndarray], Any]
    run: Callable[[Any], Any]
    to_numpy: Callable[[Any], np.ndarray]
    sync: Callable[[], None] | None = None
    handle: Any = field(default=None, repr=False)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.to_numpy(self.run(self.prepare(x)))


class DeviceUnavailable(RuntimeError):
    """The runtime cannot run on the requested device here (its message names what is missing);
    raised instead of letting the runtime fall back to the CPU behind the caller's back."""


def onnxruntime_cuda_missing(provider: str = "cuda") -> str | None:
    """Why ONNX Runtime cannot run on CUDA with ``provider`` ("cuda" or "tensorrt") here, or
    None when that execution provider is available."""
    import onnxruntime as ort

    if provider not in ORT_PROVIDERS:
        raise ValueError(f"unknown onnxruntime provider {provider!r}; choose one of {list(ORT_PROVIDERS)}")
    available = ort.get_available_providers()
    if ORT_PROVIDERS[provider] not in available:
        need = "onnxruntime-gpu" + (" and TensorRT (pip install tensorrt)" if provider == "tensorrt" else "")
        return (f"onnxruntime has no {'CUDA' if provider == 'cuda' else 'TensorRT'} provider "
                f"(installed: {', '.join(available)}); install {need}")
    return None


def tensorrt_missing() -> str | None:
    """Why a TensorRT engine cannot be built or run here, or None when it can."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        return "no CUDA (TensorRT needs an NVIDIA GPU)"
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt package is not installed (pip install tensorrt)"
    return None


def kind_of(artifact) -> str:
    """Backend kind of a module or path; raises naming the supported formats."""
    if not isinstance(artifact, (str, Path)):  # torch is imported only when a module is given,
        import torch                           # so an ONNX / OpenVINO / TFLite process stays torch-free

        if isinstance(artifact, torch.nn.Module):
            return "pytorch"
        raise ValueError(f"cannot run a {type(artifact).__name__}; pass a torch.nn.Module or a path")
    p = Path(artifact)
    if p.is_dir():
        xml = sorted(p.glob("*.xml"))
        if xml:
            return "openvino"
    kind = SUFFIX_KIND.get(p.suffix.lower())
    if kind is None:
        raise ValueError(f"cannot tell the runtime of {p.name!r}; supported: a torch.nn.Module or "
                         f"files ending in {', '.join(SUFFIX_KIND)} (or an OpenVINO folder)")
    return kind


def _first(out):
    while isinstance(out, (list, tuple, dict)):
        out = next(iter(out.values())) if isinstance(out, dict) else out[0]
    return out


def load_module(path) -> "torch.nn.Module":
    """A module saved whole with ``torch.save(module)``, or the model of an ultralytics checkpoint."""
    import torch

    obj = torch.load(str(path), map_location="cpu", weights_only=False)
    if isinstance(obj, dict):  # ultralytics checkpoint: prefer the EMA weights when present
        obj = obj["ema"] if isinstance(obj.get("ema"), torch.nn.Module) else obj.get("model")
    if not isinstance(obj, torch.nn.Module):
        raise ValueError(f"{Path(path).name} holds a {type(obj).__name__}, not a saved module; "
                         "save with torch.save(model) or pass the module itself")
    return obj.float()


def load(artifact, *, threads: int = DEFAULT_THREADS, device: str = "cpu",
         openvino_precision: str = "f32", optimize: bool = True, precision: str = "fp32",
         provider: str = "cuda") -> Backend:
    """Open ``artifact`` for inference with ``threads`` CPU threads (see module doc).

    ``openvino_precision`` is OpenVINO's ``INFERENCE_PRECISION_HINT``: "f32" by default,
    because on CPUs with AVX512-BF16 / AMX OpenVINO otherwise silently computes in bf16;
    pass "bf16" to measure that mode on purpose. An int8 model stays int8 either way.
    ``optimize=False`` (ONNX Runtime only) turns graph optimizations off: a QDQ int8 model then
    runs every ``DequantizeLinear`` and float kernels, a float simulation of its int8 kernels.
    On CUDA: ``precision="fp16"`` runs a PyTorch / TorchScript model in half precision (the
    input is cast too); ``provider`` picks ONNX Runtime's execution provider ("cuda" or
    "tensorrt", whose fp16 follows ``precision``). A runtime that cannot run on CUDA here raises
    :class:`DeviceUnavailable` naming what is missing; none falls back to the CPU. A TensorRT
    ``.engine`` (ultralytics' export) runs on CUDA only, through ultralytics' ``AutoBackend``.
    Every option is checked here, before any runtime is imported; then the runtime's own loader
    (:data:`LOADERS`) opens the model.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose cpu or cuda")
    kind = kind_of(artifact)
    if not optimize and kind != "onnxruntime":
        raise ValueError(f"optimize=False applies to ONNX Runtime only, not to {kind}")
    if device == "cuda" and kind not in ("pytorch", "torchscript", "onnxruntime", "tensorrt"):
        raise ValueError(f"{kind} runs on the CPU here; use device='cpu'")
    if kind == "tensorrt" and device != "cuda":
        raise ValueError("a TensorRT engine runs on CUDA only; use device='cuda'")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}")
    if precision == "fp16" and not (device == "cuda" and kind in ("pytorch", "torchscript", "onnxruntime")):
        raise ValueError("precision='fp16' is for PyTorch, TorchScript and ONNX Runtime's TensorRT "
                         "provider on CUDA; export an fp16 model for the other runtimes")
    if provider not in ORT_PROVIDERS:
        raise ValueError(f"unknown onnxruntime provider {provider!r}; choose one of {list(ORT_PROVIDERS)}")
    if kind == "onnxruntime" and precision == "fp16" and provider != "tensorrt":
        raise ValueError("ONNX Runtime runs fp16 on CUDA through provider='tensorrt'; for the CUDA "
                         "provider export an fp16 ONNX model")
    if openvino_precision not in ("f32", "bf16", "f16"):
        raise ValueError(f"unknown openvino_precision {openvino_precision!r}; choose f32, bf16 or f16")
    return LOADERS[kind](artifact, kind=kind, threads=threads, device=device, precision=precision,
                         provider=provider, optimize=optimize, openvino_precision=openvino_precision)


# --------------------------------------------------------------------------- one loader per runtime
# Each takes the artifact and load()'s already-checked options, and returns a Backend.

def _load_torch(artifact, *, kind: str, threads: int, device: str, precision: str, **_) -> Backend:
    """PyTorch eager (a module, a pickled module or an ultralytics checkpoint) or TorchScript. It runs
    on the process's torch thread count, which loading leaves alone: a timing worker sets
    ``threads`` when it starts (:mod:`common.speed`), a fresh RAM process through
    ``OMP_NUM_THREADS``, and a notebook's kernel keeps the threads it trains and evaluates with."""
    import torch

    if isinstance(artifact, torch.nn.Module):
        model = artifact
    elif kind == "pytorch":
        model = load_module(artifact)
    else:
        model = torch.jit.load(str(artifact), map_location=device)
    model = model.eval().to(device)
    if precision == "fp16":
        model = model.half()
    dtype = next((p.dtype for p in model.parameters()), torch.float32)

    def run(x):
        with torch.inference_mode():
            return _first(model(x))

    sync = torch.cuda.synchronize if device == "cuda" else None
    return Backend(kind, threads, device,
                   prepare=lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device, dtype),
                   run=run, to_numpy=lambda y: y.float().cpu().numpy(), sync=sync, handle=model)


def _load_onnxruntime(artifact, *, kind: str, threads: int, device: str, precision: str, provider: str,
                      optimize: bool, **_) -> Backend:
    """An ONNX model in ONNX Runtime: sequential, ``threads`` intra-op threads, on the CPU or a CUDA provider."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if device == "cuda" and (why := onnxruntime_cuda_missing(provider)):
        raise DeviceUnavailable(why)
    wanted = ORT_PROVIDERS[provider]
    options = {"trt_fp16_enable": precision == "fp16"} if provider == "tensorrt" else {}
    on_gpu = ([(wanted, options), "CUDAExecutionProvider"] if provider == "tensorrt" else [wanted])
    providers = (on_gpu if device == "cuda" else []) + ["CPUExecutionProvider"]
    sess = ort.InferenceSession(str(artifact), so, providers=providers)
    if device == "cuda" and sess.get_providers()[0] != wanted:
        # ONNX Runtime falls back to the next provider (at last the CPU) when one fails to start
        raise DeviceUnavailable(f"onnxruntime's {'CUDA' if provider == 'cuda' else 'TensorRT'} provider "
                                f"did not start (session providers: "
                                f"{', '.join(sess.get_providers())}); check the CUDA / cuDNN "
                                f"{'/ TensorRT ' if provider == 'tensorrt' else ''}libraries "
                                "onnxruntime-gpu needs")
    inp = sess.get_inputs()[0]
    np_dtype = np.float16 if "float16" in inp.type else np.float32
    return Backend(kind, threads, device,
                   prepare=lambda a: {inp.name: np.ascontiguousarray(a, dtype=np_dtype)},
                   run=lambda feed: sess.run(None, feed)[0],
                   to_numpy=lambda y: np.asarray(y, dtype=np.float32), handle=sess)


def _load_tensorrt(artifact, *, kind: str, threads: int, device: str, **_) -> Backend:
    """A TensorRT ``.engine`` through ultralytics' AutoBackend (CUDA only)."""
    if why := tensorrt_missing():
        raise DeviceUnavailable(why)
    import torch
    from ultralytics.nn.autobackend import AutoBackend

    engine = AutoBackend(str(artifact), device=torch.device("cuda:0"), verbose=False)
    half = bool(getattr(engine, "fp16", False))

    def run(x):
        with torch.inference_mode():
            return _first(engine(x))

    return Backend(kind, threads, device,
                   prepare=lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(
                       "cuda", torch.half if half else torch.float32),
                   run=run, to_numpy=lambda y: y.float().cpu().numpy(),
                   sync=torch.cuda.synchronize, handle=engine)


def _load_openvino(artifact, *, kind: str, threads: int, device: str, openvino_precision: str, **_) -> Backend:
    """An OpenVINO IR (``.xml`` or its folder) compiled for the CPU: latency hint, one stream."""
    import openvino as ov

    p = Path(artifact)
    xml = sorted(p.glob("*.xml"))[0] if p.is_dir() else p
    compiled = ov.Core().compile_model(str(xml), "CPU", {
        "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
        "INFERENCE_PRECISION_HINT": openvino_precision})
    request = compiled.create_infer_request()
    out0 = compiled.output(0)

    def run(a):
        request.infer(a)  # sync, single request, input set by position
        return request.get_tensor(out0).data

    return Backend(kind, threads, device,
                   prepare=lambda a: [np.ascontiguousarray(a, dtype=np.float32)],
                   run=run, to_numpy=lambda y: np.array(y, dtype=np.float32), handle=compiled)


def _load_tflite(artifact, *, kind: str, threads: int, device: str, **_) -> Backend:
    """A ``.tflite`` model in the LiteRT interpreter; NCHW input transposed for NHWC models, int8 I/O scaled."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(artifact), num_threads=threads)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

    def prepare(a):
        a = np.ascontiguousarray(a, dtype=np.float32)
        current = tuple(interp.get_input_details()[0]["shape"])  # changes after a resize
        nhwc = (a.shape[0], *a.shape[2:], a.shape[1]) if a.ndim == 4 else None
        if current != a.shape:
            if nhwc is not None and tuple(inp["shape"][1:]) == nhwc[1:]:
                a = np.ascontiguousarray(a.transpose(0, 2, 3, 1))  # NCHW -> NHWC models
            if current != a.shape:
                interp.resize_tensor_input(inp["index"], a.shape)
                interp.allocate_tensors()
        scale, zero = inp.get("quantization", (0.0, 0))
        if inp["dtype"] in (np.int8, np.uint8) and scale:
            a = np.clip(np.round(a / scale + zero), np.iinfo(inp["dtype"]).min,
                        np.iinfo(inp["dtype"]).max).astype(inp["dtype"])
        return a

    def run(a):
        interp.set_tensor(inp["index"], a)
        interp.invoke()
        y = interp.get_tensor(out["index"])
        scale, zero = out.get("quantization", (0.0, 0))
        return (y.astype(np.float32) - zero) * scale if out["dtype"] in (np.int8, np.uint8) and scale else y

    return Backend(kind, threads, device, prepare=prepare, run=run,
                   to_numpy=lambda y: np.asarray(y, dtype=np.float32), handle=interp)


#: the loader of each runtime :func:`kind_of` names
LOADERS: dict[str, Callable[..., Backend]] = {"pytorch": _load_torch, "torchscript": _load_torch,
                                              "onnxruntime": _load_onnxruntime, "tensorrt": _load_tensorrt,
                                              "openvino": _load_openvino, "tflite": _load_tflite}
