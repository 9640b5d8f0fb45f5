"""Linear quantization: from scratch, and with the production libraries.

- :func:`quantize_tensor`: symmetric / asymmetric, per-tensor / per-channel integer codes of a
  tensor, min / max calibrated, with :func:`quantization_error`;
- :func:`onnx_int8`: static int8 with ONNX Runtime (QDQ, per-channel weights), and
  :func:`onnx_quantized_weight` to read back the codes it stored;
- :func:`openvino_int8`: post-training int8 to OpenVINO with NNCF (the production path on
  Intel / AMD CPUs with VNNI), for both workloads:

- classifier: ``openvino.convert_model`` then ``nncf.quantize`` on calibration images drawn
  from the training split;
- detector: ultralytics' own OpenVINO exporter with ``int8=True``, which runs NNCF with the
  detection head's post-processing kept in float (its ignored scope), calibrated on the
  training split.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import data as data_mod


class QuantizationError(ValueError):
    """Quantization settings that make no sense (bits out of range, a bad axis)."""


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

    def dequantize(self) -> np.ndarray:
        return ((self.q.astype(np.float64) - self._b(self.zero_point)) * self._b(self.scale)).astype(np.float32)

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
                    axis: int = 0) -> QTensor:
    """Linear quantization of ``w`` from scratch, min / max calibrated.

    symmetric: ``scale = max|w| / qmax``, zero point 0; asymmetric: the range ``[min(w, 0),
    max(w, 0)]`` mapped onto ``[0, 2^b - 1]`` with an integer zero point (real 0 is exactly
    representable either way). ``per_channel``: one scale (and zero point) per slice along
    ``axis`` (the output channels of a Conv / Linear weight)."""
    w = np.asarray(w.detach().cpu().numpy() if hasattr(w, "detach") else w, dtype=np.float64)
    qmin, qmax = qrange(bits, symmetric)
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
    if symmetric:
        scale = np.maximum(-lo, hi) / qmax
        zero = np.zeros_like(scale)
    else:
        scale = (hi - lo) / (qmax - qmin)
        zero = np.where(scale > 0, np.clip(np.round(qmin - lo / np.where(scale > 0, scale, 1)), qmin, qmax), 0)
    scale = np.where(scale > 0, scale, 1.0)  # an all-zero channel: any scale codes it as 0
    qt = QTensor(np.zeros(w.shape, np.int32), scale.astype(np.float32), zero.astype(np.int64), bits, symmetric, axis)
    s, z = qt._b(qt.scale.astype(np.float64)), qt._b(qt.zero_point)
    qt.q = np.clip(np.round(w / s) + z, qmin, qmax).astype(np.int32)
    return qt


def quantization_error(w, qt: QTensor) -> dict[str, float]:
    """How far the dequantized tensor is from ``w``: MSE, max |error| (in units of the step as
    well) and the signal-to-quantization-noise ratio in dB."""
    w = np.asarray(w.detach().cpu().numpy() if hasattr(w, "detach") else w, dtype=np.float64)
    err = qt.dequantize().astype(np.float64) - w
    mse = float((err ** 2).mean())
    return {"mse": mse, "max_abs": float(np.abs(err).max()),
            "max_steps": float((np.abs(err) / qt.step).max()),
            "sqnr_db": float(10 * np.log10((w ** 2).mean() / mse)) if mse > 0 else float("inf")}


def openvino_int8(bl, out_dir: str | Path, samples: int = 300, seed: int = 0) -> Path:
    """Quantize baseline (or :func:`common.workloads.variant`) ``bl`` to an int8 OpenVINO IR
    under ``out_dir``; returns the ``.xml`` path. ``samples``: calibration images (training
    split)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if samples < 1:
        raise ValueError(f"need at least one calibration image, got samples={samples}")
    if bl.config.workload == "yolov8n":
        return _ultralytics_int8(bl, out_dir, samples)
    import nncf
    import openvino as ov
    import torch

    x = torch.zeros(bl.input_shape)
    ov_model = ov.convert_model(bl.model.eval(), example_input=x, input=[(-1, *bl.input_shape[1:])])
    calib = data_mod.calibration_subset(bl.data, min(samples, len(bl.data.y_train)), seed).numpy()
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
    path = Path(y.export(format="openvino", int8=True, data=str(bl.data), split="train",
                         fraction=min(1.0, samples / n_train), imgsz=bl.config.img_size, batch=1,
                         device="cpu"))
    return next(path.glob("*.xml"))


# --------------------------------------------------------------------------- ONNX Runtime

def onnx_int8(onnx_path: str | Path, out_path: str | Path, calibration: np.ndarray, *,
              per_channel: bool = True, exclude: list[str] | None = None) -> Path:
    """Static int8 post-training quantization of an ONNX model with ONNX Runtime, QDQ format:
    weights int8 symmetric (per output channel with ``per_channel``), activations uint8 with
    min / max ranges calibrated on ``calibration`` (a float32 NCHW batch, fed one image at a
    time). ``exclude``: node names kept in float (e.g. a detector's box decoding). Written
    atomically to ``out_path``."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quant_pre_process, quantize_static)
    import onnx

    calibration = np.asarray(calibration, dtype=np.float32)
    if calibration.ndim != 4 or len(calibration) == 0:
        raise QuantizationError(f"the calibration set must be a non-empty NCHW batch, got shape {calibration.shape}")
    name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration)

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {name: x[None]}

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.stem + ".tmp.onnx")
    pre = out_path.with_name(out_path.stem + ".pre.tmp.onnx")
    try:
        # shape inference first, as ONNX Runtime recommends; no graph optimization, so node names
        # (``exclude``) stay those of the exported model
        quant_pre_process(str(onnx_path), str(pre), skip_optimization=True)
        quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude or []),
                        calibrate_method=CalibrationMethod.MinMax)
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
        pre.unlink(missing_ok=True)
    return out_path


def onnx_quantized_weight(onnx_path: str | Path, weight_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The int8 codes, scales and zero points ONNX Runtime stored for the float initializer
    ``weight_name`` (its ``DequantizeLinear`` inputs), to compare with :func:`quantize_tensor`."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0].startswith(weight_name) \
                and node.input[0] in inits and node.input[0] != weight_name:
            q, s, z = (numpy_helper.to_array(inits[i]) for i in node.input[:3])
            return q, s, z
    known = sorted(n for n in inits if n.endswith("_quantized"))[:5]
    raise QuantizationError(f"no quantized weight for {weight_name!r} in {Path(onnx_path).name}; "
                            f"quantized initializers look like {known}")
