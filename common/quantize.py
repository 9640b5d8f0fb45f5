"""Linear quantization: from scratch, and with the production libraries.

- :func:`quantize_tensor`: symmetric / asymmetric, per-tensor / per-channel integer codes of a
  tensor, min / max calibrated, with :func:`quantization_error`;
- :func:`fake_quantize`: weights quantize-dequantized on every forward with a straight-through
  gradient (quantization-aware training), :func:`layer_sensitivity` (one layer at a time);
- :func:`openvino_int8`: post-training int8 to OpenVINO with NNCF (the production path on
  Intel / AMD CPUs with VNNI): the classifier through ``openvino.convert_model`` then
  ``nncf.quantize``, the detector through ultralytics' OpenVINO exporter with ``quantize=8``,
  which runs NNCF with the head's post-processing kept in float (its ignored scope);
  :func:`openvino_fp16`;
- ONNX Runtime (in :mod:`common.quantize_onnx`, re-exported here): :func:`onnx_int8` (static,
  QDQ, per-channel weights, exact on CPUs with and without VNNI), :func:`onnx_dynamic`,
  :func:`onnx_fp16`, :func:`onnx_quantized_weight` to read back the codes it stored,
  :func:`kernel_error` to check the integer kernels against the same model run in float;
- PyTorch :func:`torch_dynamic`; TFLite :func:`tflite_quantize` (AI Edge Quantizer: fp16,
  dynamic, static int8) and :func:`yolo_tflite_int8` (ultralytics' LiteRT exporter);
- :func:`check_methods`, :func:`check_calibration`: bad settings fail before any work.

Calibration images always come from the training split (:func:`calibration_images`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import data as data_mod
from common import files
from common.errors import QuantizationError  # noqa: F401  (raised here; part of this module's API)


# --------------------------------------------------------------------------- from scratch

@dataclass
class QTensor:
    """Integer codes ``q`` with ``scale`` and ``zero_point`` (scalars, or one per channel along
    ``axis``): the real value of a code is ``(q - zero_point) * scale``."""

    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    bits: int
    symmetric: bool
    axis: int | None

    def _b(self, a: np.ndarray) -> np.ndarray:  # a per-channel array broadcast against q
        if self.axis is None:
            return a
        shape = [1] * self.q.ndim
        shape[self.axis] = -1
        return a.reshape(shape)

    def dequantize(self, dtype=np.float32) -> np.ndarray:
        """The real values, as ``dtype``: float32 is what a model stores, float64 the exact value
        of each code (so that an error measured against it is the rounding alone)."""
        return ((self.q.astype(np.float64) - self._b(self.zero_point)) * self._b(self.scale)).astype(dtype)

    @property
    def step(self) -> np.ndarray:
        """The quantization step (one code) of every element."""
        return np.broadcast_to(self._b(self.scale), self.q.shape)


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """Integer range: symmetric signed [-(2^(b-1) - 1), 2^(b-1) - 1] (the -2^(b-1) code is left
    out so that zero sits in the middle and the range is the same both ways), asymmetric
    unsigned [0, 2^b - 1]."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 16:
        raise QuantizationError(f"bits must be an integer in [2, 16], got {bits!r}")
    return (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)


def quantize_tensor(w, bits: int = 8, symmetric: bool = True, per_channel: bool = False,
                    axis: int = 0, qmax: int | None = None) -> QTensor:
    """Linear quantization of ``w`` from scratch, min / max calibrated.

    symmetric: ``scale = max|w| / qmax``, zero point 0; asymmetric: the range ``[min(w, 0),
    max(w, 0)]`` mapped onto ``[0, 2^b - 1]`` with an integer zero point (real 0 is exactly
    representable either way). ``per_channel``: one scale (and zero point) per slice along
    ``axis`` (the output channels of a Conv / Linear weight). ``qmax`` (symmetric only) narrows
    the codes to ``[-qmax, qmax]``, e.g. 64 for ONNX Runtime's ``reduce_range`` (see
    :func:`onnx_int8`)."""
    w = np.asarray(w.detach().cpu().numpy() if hasattr(w, "detach") else w, dtype=np.float64)
    qmin, full = qrange(bits, symmetric)
    if qmax is None:
        qmax = full
    elif not symmetric or isinstance(qmax, bool) or not isinstance(qmax, (int, np.integer)) \
            or not 1 <= qmax <= qrange(bits, True)[1]:
        raise QuantizationError(f"qmax narrows a symmetric range: an integer in [1, {qrange(bits, True)[1]}] with symmetric=True, "
                                f"got qmax={qmax!r}, symmetric={symmetric}")
    else:
        qmin = -qmax
    if per_channel:
        if not -w.ndim <= axis < w.ndim:
            raise QuantizationError(f"axis {axis} does not exist in a {w.ndim}-d tensor")
        axis = axis % w.ndim
        flat = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        lo, hi = flat.min(1), flat.max(1)
    else:
        axis = None
        lo, hi = np.array(w.min()), np.array(w.max())
    lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
    # the scale is stored as float32, so the zero point is derived from that stored value: then
    # the range's ends land within half a step of a code, and no value is clipped by more
    scale = (np.maximum(-lo, hi) / qmax if symmetric else (hi - lo) / (qmax - qmin)).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1.0))  # an all-zero channel: any scale codes it as 0
    zero = (np.zeros(scale.shape) if symmetric
            else np.clip(np.round(qmin - lo / scale.astype(np.float64)), qmin, qmax))
    qt = QTensor(np.zeros(w.shape, np.int32), scale, zero.astype(np.int64), bits, symmetric, axis)
    s, z = qt._b(qt.scale.astype(np.float64)), qt._b(qt.zero_point)
    qt.q = np.clip(np.round(w / s) + z, qmin, qmax).astype(np.int32)
    return qt


def quantization_error(w, qt: QTensor) -> dict[str, float]:
    """How far the dequantized tensor is from ``w``: MSE, max |error| (in units of the step as
    well) and the signal-to-quantization-noise ratio in dB. Measured against the exact value of
    each code (float64), so that min / max calibration gives ``max_steps <= 0.5`` exactly; storing
    the values as float32 adds up to ``2^bits * 2^-24`` steps on top."""
    w = np.asarray(w.detach().cpu().numpy() if hasattr(w, "detach") else w, dtype=np.float64)
    err = qt.dequantize(np.float64) - w
    mse = float((err ** 2).mean())
    return {"mse": mse, "max_abs": float(np.abs(err).max()),
            "max_steps": float((np.abs(err) / qt.step).max()),
            "sqnr_db": float(10 * np.log10((w ** 2).mean() / mse)) if mse > 0 else float("inf")}


def openvino_int8(bl, out_dir: str | Path, samples: int = 300, seed: int = 0) -> Path:
    """Quantize baseline (or :func:`common.workloads.variant`) ``bl`` to an int8 OpenVINO IR
    under ``out_dir``; returns the ``.xml`` path. ``samples``: calibration images (training
    split)."""
    check_calibration(samples, training_images(bl))   # before any work
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if bl.config.workload == "yolov8n":
        return _ultralytics_int8(bl, out_dir, samples)
    import nncf
    import openvino as ov
    import torch

    x = torch.zeros(bl.input_shape)
    ov_model = ov.convert_model(bl.model.eval(), example_input=x, input=[(-1, *bl.input_shape[1:])])
    calib = data_mod.calibration_subset(bl.data, samples, seed).numpy()
    dataset = nncf.Dataset([calib[i:i + 1] for i in range(len(calib))])
    q = nncf.quantize(ov_model, dataset, subset_size=len(calib), preset=nncf.QuantizationPreset.PERFORMANCE)
    path = out_dir / "resnet18_int8" / "resnet18.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(q, str(path), compress_to_fp16=False)
    return path


def _ultralytics_int8(bl, out_dir: Path, samples: int) -> Path:
    from ultralytics.data.utils import check_det_dataset

    from common import workloads

    ckpt = out_dir / "yolov8n.pt"
    shutil.copy2(bl.ultralytics_checkpoint, ckpt)
    n_train = len(data_mod.detection_images(bl.data, "train"))
    check_det_dataset(str(bl.data))
    y = workloads.yolo(ckpt)
    path = Path(y.export(format="openvino", quantize=8, data=str(bl.data), split="train",
                         fraction=min(1.0, samples / n_train), imgsz=bl.config.img_size, batch=1,
                         device="cpu"))
    return next(path.glob("*.xml"))


# --------------------------------------------------------------------------- fp16 and dynamic int8

def openvino_fp16(bl, out_dir: str | Path) -> Path:
    """An OpenVINO IR with float16 weights (half the file; the CPU plugin computes in float32
    unless told otherwise). Classifier: ``convert_model`` + ``save_model(compress_to_fp16=True)``;
    detector: ultralytics' exporter with ``quantize=16``. Returns the ``.xml`` path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if bl.config.workload == "yolov8n":
        from common import workloads

        ckpt = out_dir / "yolov8n.pt"
        shutil.copy2(bl.ultralytics_checkpoint, ckpt)
        path = Path(workloads.yolo(ckpt).export(format="openvino", quantize=16, imgsz=bl.config.img_size,
                                                batch=1, device="cpu"))
        return next(path.glob("*.xml"))
    import openvino as ov
    import torch

    ov_model = ov.convert_model(bl.model.eval(), example_input=torch.zeros(bl.input_shape),
                                input=[(-1, *bl.input_shape[1:])])
    path = out_dir / "resnet18_fp16" / "resnet18.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov_model, str(path), compress_to_fp16=True)
    return path


def torch_dynamic(model):
    """PyTorch dynamic int8 (``torch.ao.quantization.quantize_dynamic``) of a copy of
    ``model``: ``nn.Linear`` weights int8, activations quantized per batch at run time. It has
    no dynamic convolution, so in a CNN only the classifier head changes."""
    import copy
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization is frozen, still shipped
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear},
                                                      dtype=torch.qint8)


# --------------------------------------------------------------------------- TFLite

TFLITE_MODES = ("fp16", "int8", "dynamic")


def tflite_quantize(src: str | Path, out_path: str | Path, mode: str,
                    calibration: np.ndarray | None = None) -> Path:
    """Quantize a float32 ``.tflite`` with Google's AI Edge Quantizer (what ultralytics' LiteRT
    exporter uses): ``fp16`` float16 weights (float compute), ``int8`` static int8 weights and
    activations calibrated on ``calibration`` (float32 batch in the model's input layout, fed one
    image at a time) with float32 input / output, ``dynamic`` int8 weights with activations
    quantized at run time."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import qtyping, quantizer, recipe, recipe_manager

    if mode not in TFLITE_MODES:
        raise QuantizationError(f"unknown TFLite mode {mode!r}; choose one of {', '.join(TFLITE_MODES)}")
    if mode == "int8":
        calibration = np.asarray(calibration if calibration is not None else [], dtype=np.float32)
        if calibration.ndim != 4 or len(calibration) == 0:
            raise QuantizationError(f"int8 needs a non-empty calibration batch, got shape {calibration.shape}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    qt = quantizer.Quantizer(str(src))
    if mode == "fp16":
        rm = recipe_manager.RecipeManager()
        rm.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                  num_bits=16, algorithm_key=recipe.AlgorithmName.FLOAT_CASTING)
        qt.load_quantization_recipe(rm.get_quantization_recipe())
        result = qt.quantize()
    elif mode == "dynamic":
        qt.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        result = qt.quantize()
    else:
        sig = Interpreter(model_path=str(src)).get_signature_list()
        key = next(iter(sig))
        name = sig[key]["inputs"][0]
        qt.load_quantization_recipe(recipe.static_wi8_ai8())
        for op in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):  # float32 I/O
            qt.update_quantization_recipe(regex=".*", operation_name=op,
                                          algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
        result = qt.quantize(qt.calibrate({key: [{name: x[None]} for x in calibration]}))
    with files.atomic(out_path) as tmp:
        result.export_model(str(tmp), overwrite=True)
    return out_path


def yolo_tflite_int8(bl, out_dir: str | Path, samples: int = 300) -> Path:
    """Static int8 TFLite of the detector through ultralytics' LiteRT exporter (litert-torch,
    then AI Edge Quantizer's int8 recipe on ``samples`` training images; box coordinates are
    normalised first so that they survive int8)."""
    from common import workloads

    n_train = training_images(bl)
    check_calibration(samples, n_train)   # before any work
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / "yolov8n.pt"
    shutil.copy2(bl.ultralytics_checkpoint, ckpt)
    path = workloads.yolo(ckpt).export(format="litert", quantize=8, data=str(bl.data), split="train",
                                       fraction=min(1.0, samples / n_train), imgsz=bl.config.img_size,
                                       batch=1, device="cpu")
    return Path(path)


# --------------------------------------------------------------------------- fake quantization (QAT, sensitivity)

def _fake_quant_class():
    import torch

    class FakeQuant(torch.nn.Module):
        """Weight parametrization: symmetric per-output-channel ``bits``-bit quantize-dequantize
        of the current weight (as :func:`quantize_tensor`), with a straight-through gradient."""

        def __init__(self, bits: int):
            super().__init__()
            self.qmax = qrange(bits, True)[1]
            self.bits = bits

        def forward(self, w):
            s = w.detach().abs().amax(dim=tuple(range(1, w.ndim)), keepdim=True).double() / self.qmax
            s = torch.where(s > 0, s, torch.ones_like(s))
            q = (torch.clamp(torch.round(w.double() / s), -self.qmax, self.qmax) * s).to(w.dtype)
            return w + (q - w).detach()   # forward: q; backward: identity (straight-through)

    return FakeQuant


def fake_quantize(model, bits: int, layers: list[str] | None = None):
    """Make the weights of ``layers`` (default: every layer of
    :func:`common.cluster.clusterable_layers`) quantize-dequantize to ``bits`` bits on every
    forward, symmetric per output channel, in place. Training such a model is quantization-aware
    training with a straight-through estimator; :func:`common.cluster.untie` bakes the quantized
    weights in as plain parameters."""
    from torch.nn.utils import parametrize

    from common.cluster import clusterable_layers

    qrange(bits, True)
    all_layers = clusterable_layers(model)
    names = list(all_layers) if layers is None else list(layers)
    unknown = [n for n in names if n not in all_layers]
    if unknown:
        raise QuantizationError(f"unknown layers {unknown[:3]}; quantizable layers look like {list(all_layers)[:3]}")
    cls = _fake_quant_class()
    for n in names:
        parametrize.register_parametrization(all_layers[n], "weight", cls(bits))
    return model


def output_sqnr(reference, output) -> float:
    """Signal-to-noise ratio (dB) of ``output`` against ``reference`` (arrays or tensors)."""
    ref = np.asarray(reference, dtype=np.float64)
    err = np.asarray(output, dtype=np.float64) - ref
    mse = (err ** 2).mean()
    return float(10 * np.log10((ref ** 2).mean() / mse)) if mse > 0 else float("inf")


def layer_sensitivity(model, x, bits: int, *, batch: int = 64, progress: bool = True) -> dict[str, float]:
    """Quantize one layer at a time (``bits``-bit weights, the rest float) and measure the output
    SQNR in dB against the float model on inputs ``x``: the lower, the more sensitive the layer."""
    import copy

    import torch
    from tqdm import tqdm

    from common.backends import _first
    from common.cluster import clusterable_layers, untie

    x = torch.as_tensor(x)

    def run(m):
        with torch.no_grad():
            return torch.cat([_first(m(x[i:i + batch])) for i in range(0, len(x), batch)]).numpy()

    ref = run(model.eval())
    out = {}
    for name in tqdm(list(clusterable_layers(model)), desc=f"{bits}-bit, one layer at a time", disable=not progress):
        m = copy.deepcopy(model)
        untie(fake_quantize(m, bits, [name]))
        out[name] = output_sqnr(ref, run(m.eval()))
    return out


# --------------------------------------------------------------------------- methods and checks

#: every post-training path hw2 knows, by the name a notebook parameter uses
METHODS = ("fp16-openvino", "fp16-onnx", "fp16-cuda", "dynamic-torch", "dynamic-onnx",
           "int8-openvino", "int8-onnx", "tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8")


def check_methods(methods) -> list[str]:
    """``methods`` as a list, or one error naming the unknown ones and every valid name."""
    methods = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise QuantizationError(f"unknown method(s) {unknown}; valid methods: {', '.join(METHODS)}")
    return methods


def check_calibration(n, available: int) -> int:
    """A calibration size between 1 and the ``available`` training images, or one clear error."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise QuantizationError(f"calibration size must be an integer, got {n!r}")
    if n < 1:
        raise QuantizationError(f"the calibration set is empty (size {n}); give at least 1 image")
    if n > available:
        raise QuantizationError(f"calibration size {n} is larger than the training split "
                                f"({available} images); choose 1 .. {available}")
    return int(n)


def cuda_fp16(bl, *, warmup: int = 10, repeats: int = 100, threads: int = 2):
    """``model.half()`` on the GPU: quality on the test split and batch-1 latency, or ``None``
    when there is no CUDA device (the caller records the row as skipped)."""
    import copy

    import torch

    from common import env, timing, workloads

    if not env.gpu_measurements()[0]:   # no CUDA, or a session pinned to the CPU
        return None
    model = copy.deepcopy(bl.model).half().cuda().eval()
    x = torch.zeros(bl.input_shape, device="cuda", dtype=torch.half)
    with torch.inference_mode():
        stats = timing.measure(lambda: model(x), warmup=warmup, repeats=repeats, max_seconds=20.0,
                               sync=torch.cuda.synchronize, batch=bl.input_shape[0], threads=threads,
                               backend="pytorch fp16 (cuda)")
    if bl.config.workload == "resnet18":
        from common.metrics import classification_metrics

        xs, ys = bl.data.split("test")
        with torch.inference_mode():
            preds = torch.cat([model(xs[i:i + 256].cuda().half()).argmax(1).cpu() for i in range(0, len(xs), 256)])
        quality = classification_metrics(ys.numpy(), preds.numpy(), n_classes=len(bl.data.classes))
    else:
        quality = workloads.evaluate_detector(bl.ultralytics_checkpoint, bl.data, img_size=bl.config.img_size,
                                              half=True, device="0")
    return quality, stats


def calibration_images(bl, n: int, seed: int = 0) -> np.ndarray:
    """``n`` training images drawn at random (fixed ``seed``) as the model's float32 NCHW input,
    for either workload. (ultralytics' exporters, which quantize the detector for OpenVINO and
    TFLite, calibrate on the first images of the split instead.)"""
    from common import workloads

    if bl.config.workload == "resnet18":
        check_calibration(n, len(bl.data.y_train))
        return data_mod.calibration_subset(bl.data, n, seed).numpy()
    check_calibration(n, len(data_mod.detection_images(bl.data, "train")))
    return workloads.sample_inputs(bl, n, "train", seed=seed)


def training_images(bl) -> int:
    """How many images the training split (the calibration source) holds."""
    if bl.config.workload == "resnet18":
        return len(bl.data.y_train)
    return len(data_mod.detection_images(bl.data, "train"))


# ONNX Runtime's quantizers and graph helpers live in their own module; re-exported here
from common.quantize_onnx import (REDUCED_QMAX, conv_weight_names, kernel_error,  # noqa: E402,F401
                                  onnx_dynamic, onnx_float_weight, onnx_fp16, onnx_int8,
                                  onnx_quantized_weight, output_step, yolo_postprocess_nodes)
