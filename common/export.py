"""Export a baseline to every deployment format, with the libraries' own exporters.

- ``resnet18``: ``torch.jit.trace`` (TorchScript), ``torch.onnx.export`` (ONNX, dynamic batch),
  ``openvino.convert_model`` + ``save_model(compress_to_fp16=False)`` (fp32 IR, dynamic batch),
  ``litert_torch.convert`` (TFLite, batch 1).
- ``yolov8n``: ultralytics' exporter for every format (batch 1, ``imgsz`` of the baseline).
- ``tensorrt``: a skipped result with its reason here (no CUDA; with CUDA, these CPU-timed
  tables leave it to :mod:`common.gpu`, which builds and measures the engines on the GPU).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

FORMATS = ("pytorch", "torchscript", "onnx", "openvino", "tflite", "tensorrt")
ULTRALYTICS_FORMAT = {"torchscript": "torchscript", "onnx": "onnx", "openvino": "openvino",
                      "tflite": "tflite"}
#: the names ultralytics' ``benchmark`` uses for the same formats
BENCHMARK_FORMAT = {**ULTRALYTICS_FORMAT, "tflite": "litert"}


@dataclass
class Exported:
    """One exported model, or the reason it could not be made here."""

    format: str
    path: Path | None
    export_seconds: float
    skipped: str | None = None


def check_formats(formats) -> list[str]:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; valid formats: {', '.join(FORMATS)}")
    return list(formats)


def _missing_runtime(fmt: str) -> str | None:
    """Why ``fmt`` cannot be exported or run here, or None when it can."""
    import importlib.util

    if fmt == "tensorrt":
        from common import backends

        if why := backends.tensorrt_missing():     # no CUDA, or no tensorrt package
            return f"skipped: {why}"
        return ("skipped: TensorRT runs on the GPU only and this table is timed on the CPU; "
                "`make gpu` (common.gpu) measures TensorRT engines into results/gpu/")
    needs = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "ai_edge_litert"}
    if fmt in needs and importlib.util.find_spec(needs[fmt]) is None:
        return f"skipped: {needs[fmt]} is not installed"
    return None


def export(bl, fmt: str, out_dir: Path, batch: int = 1) -> Exported:
    """Export baseline ``bl`` (a :class:`common.workloads.Baseline`) to ``fmt`` under ``out_dir``.

    ``batch`` fixes the batch size of ultralytics' (static) exports; the classifier's ONNX and
    OpenVINO exports have a dynamic batch, its TorchScript and TFLite run any batch anyway.

    A format whose runtime is missing gives an ``Exported`` with ``skipped`` set instead of
    raising, so a notebook can go on with the other formats.
    """
    check_formats([fmt])
    if fmt == "pytorch":
        return Exported(fmt, bl.path, 0.0)
    reason = _missing_runtime(fmt)
    if reason:
        return Exported(fmt, None, 0.0, reason)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if bl.config.workload == "yolov8n":
        path = _export_ultralytics(bl, fmt, out_dir, batch)
    else:
        path = _export_classifier(bl, fmt, out_dir)
    return Exported(fmt, path, time.perf_counter() - t0)


def _export_ultralytics(bl, fmt: str, out_dir: Path, batch: int) -> Path:
    from common import workloads

    ckpt = out_dir / "yolov8n.pt"  # ultralytics writes exports beside the checkpoint
    shutil.copy2(bl.ultralytics_checkpoint, ckpt)  # always: the baseline may have been retrained
    y = workloads.yolo(ckpt)
    path = Path(y.export(format=ULTRALYTICS_FORMAT[fmt], imgsz=bl.config.img_size, batch=batch,
                         device="cpu"))
    if fmt == "openvino":
        return next(path.glob("*.xml"))
    if fmt == "tflite" and path.is_dir():
        return next(path.glob("*float32.tflite"))
    return path


def _export_classifier(bl, fmt: str, out_dir: Path) -> Path:
    import torch

    model = bl.model.eval()
    x = torch.zeros(bl.input_shape)
    if fmt == "torchscript":
        path = out_dir / "resnet18.torchscript"
        with torch.no_grad():
            torch.jit.trace(model, x).save(str(path))
    elif fmt == "onnx":
        path = out_dir / "resnet18.onnx"
        torch.onnx.export(model, (x,), str(path), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
    elif fmt == "openvino":
        import openvino as ov

        path = out_dir / "resnet18_openvino" / "resnet18.xml"
        ov_model = ov.convert_model(model, example_input=x, input=[(-1, *bl.input_shape[1:])])
        ov.save_model(ov_model, str(path), compress_to_fp16=False)  # default would be fp16 weights
    elif fmt == "tflite":
        import litert_torch

        path = out_dir / "resnet18.tflite"
        litert_torch.convert(model, (x,)).export(str(path))
    else:
        raise ValueError(f"no classifier exporter for {fmt!r}")
    return path


def max_diff(workload: str, fmt: str, model, x, reference, img_size: int, *,
             threads: int = 2) -> float:
    """The largest difference between ``model``'s outputs on ``x`` and ``reference``, PyTorch's raw
    outputs on the same images, both brought to one scale by :func:`comparable`. ``model`` is a
    saved file, a module or an open :class:`common.backends.Backend`; it runs one image at a time
    (ultralytics' exports have batch 1 baked in)."""
    import numpy as np

    from common import backends

    runner = model if isinstance(model, backends.Backend) else backends.load(model, threads=threads)
    out = np.concatenate([runner(np.asarray(x[i:i + 1])) for i in range(len(x))])
    return float(np.abs(comparable(workload, fmt, out, img_size)
                        - comparable(workload, "pytorch", reference, img_size)).max())


def comparable(workload: str, fmt: str, output, img_size: int):
    """Raw outputs on one scale for parity checks: classifier logits as they are; detector
    outputs with box rows divided by the image size (ultralytics' TFLite export emits boxes
    normalised to [0, 1], every other format in pixels) and class scores as they are."""
    import numpy as np

    out = np.array(output, dtype=np.float64)
    if workload == "yolov8n" and fmt != "tflite":
        out[:, :4] /= img_size
    return out
