"""Quantization with ONNX Runtime: static int8 (QDQ), dynamic int8, float16, and the helpers that
read an ONNX graph back (stored int8 codes, float initializers, convolution names, a detector's
post-processing nodes). :mod:`common.quantize` re-exports all of it, so notebooks call
``quantize.onnx_int8`` like every other quantizer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common import files
from common.errors import QuantizationError
from common.layers import is_fixed_onnx_node


def _error(message: str) -> ValueError:
    """:class:`common.errors.QuantizationError`, the error :mod:`common.quantize` raises too."""
    return QuantizationError(message)


#: ONNX Runtime's int8 weight codes with ``reduce_range``: [-64, 64] instead of [-127, 127]
REDUCED_QMAX = 64


def onnx_int8(onnx_path: str | Path, out_path: str | Path, calibration: np.ndarray, *,
              per_channel: bool = True, exclude: list[str] | None = None,
              reduce_range: bool = True) -> Path:
    """Static int8 post-training quantization of an ONNX model with ONNX Runtime, QDQ format:
    weights int8 symmetric (per output channel with ``per_channel``), activations uint8 with
    min / max ranges calibrated on ``calibration`` (a float32 NCHW batch, fed one image at a
    time). ``exclude``: node names kept in float (e.g. a detector's box decoding). Written
    atomically to ``out_path``.

    ``reduce_range`` (default) keeps the weight codes in [-64, 64] (:data:`REDUCED_QMAX`), so the
    result is the same on every x86 CPU: without VNNI (AVX2, AVX-512 before Cascade Lake, and
    every AMD before Zen 4) ONNX Runtime's uint8 x int8 kernels add pairs of products in int16
    (``vpmaddubsw``), and 255 * 127 * 2 overflows it and saturates; 255 * 64 * 2 does not. With
    ``reduce_range=False`` (ONNX Runtime's default) the model is exact only on VNNI CPUs (measured
    in hw2)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quant_pre_process, quantize_static)
    import onnx

    calibration = np.asarray(calibration, dtype=np.float32)
    if calibration.ndim != 4 or len(calibration) == 0:
        raise _error(f"the calibration set must be a non-empty NCHW batch, got shape {calibration.shape}")
    name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration)

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {name: x[None]}

    out_path = Path(out_path)
    pre = out_path.with_name(out_path.stem + ".pre.tmp.onnx")
    try:
        with files.atomic(out_path) as tmp:
            # shape inference first, as ONNX Runtime recommends; no graph optimization, so node names
            # (``exclude``) stay those of the exported model
            quant_pre_process(str(onnx_path), str(pre), skip_optimization=True)
            quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude or []),
                            calibrate_method=CalibrationMethod.MinMax, reduce_range=reduce_range)
            _copy_metadata(onnx_path, tmp)
    finally:
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
    raise _error(f"no quantized weight for {weight_name!r} in {Path(onnx_path).name}; "
                            f"quantized initializers look like {known}")



def _save_onnx(model, out_path: Path) -> Path:
    import onnx

    with files.atomic(out_path) as tmp:
        onnx.save(model, str(tmp))
    return out_path


def onnx_fp16(onnx_path: str | Path, out_path: str | Path) -> Path:
    """Every float32 initializer and op of an ONNX model in float16, inputs and outputs kept
    float32 (``onnxruntime.transformers.float16``, as ultralytics does for CPU fp16 exports)."""
    import onnx
    from onnxruntime.transformers import float16

    model = float16.convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    return _save_onnx(model, Path(out_path))


def onnx_dynamic(onnx_path: str | Path, out_path: str | Path) -> Path:
    """Dynamic int8 with ONNX Runtime: weights stored as 8-bit integers, each activation
    quantized on the fly from its own min / max at run time (no calibration). Weights are
    uint8, the type ONNX Runtime's CPU ``ConvInteger`` kernel implements."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_path = Path(out_path)
    with files.atomic(out_path) as tmp:
        quantize_dynamic(str(onnx_path), str(tmp), weight_type=QuantType.QUInt8, per_channel=False)
        _copy_metadata(onnx_path, tmp)
    return out_path


def _copy_metadata(src: str | Path, dst: str | Path) -> None:
    """Carry an ONNX model's ``metadata_props`` (ultralytics keeps class names, stride and image
    size there) over to its quantized copy."""
    import onnx

    meta = onnx.load(str(src), load_external_data=False).metadata_props
    if not meta:
        return
    model = onnx.load(str(dst))
    del model.metadata_props[:]
    model.metadata_props.extend(meta)
    onnx.save(model, str(dst))


def yolo_postprocess_nodes(onnx_path: str | Path, head: str = "/model.22/") -> list[str]:
    """Names of the detector head's post-processing nodes in an ultralytics ONNX export: every
    node of the Detect module (``head``) outside its convolution branches: the DFL, box decoding,
    concatenations and the final sigmoid, which int8 would damage and which are kept in float,
    as NNCF's and ultralytics' int8 recipes do; and every node of a fixed layer
    (:mod:`common.layers`: the DFL projection), wherever it sits."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    names = [n.name for n in graph.node if (n.name.startswith(head)     # not the conv branches
             and not n.name[len(head):].startswith(("cv2", "cv3")))    # (cv2 boxes, cv3 classes)
             or is_fixed_onnx_node(n.name)]                            # nor a fixed layer anywhere
    if not any(n.startswith(head) for n in names):
        raise _error(f"no node under {head!r} in {Path(onnx_path).name}: not an ultralytics detector export?")
    return names


def onnx_float_weight(onnx_path: str | Path, name: str) -> np.ndarray:
    """The float initializer ``name`` of an ONNX model (e.g. a convolution weight with its
    BatchNorm folded in, which is what the exporters quantize)."""
    import onnx
    from onnx import numpy_helper

    for t in onnx.load(str(onnx_path)).graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise _error(f"no initializer {name!r} in {Path(onnx_path).name}")


def conv_weight_names(onnx_path: str | Path) -> list[str]:
    """The weight initializer of every ``Conv`` node, in graph order."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    return [n.input[1] for n in model.graph.node if n.op_type == "Conv" and n.input[1] in inits]


def output_step(onnx_path: str | Path) -> float | None:
    """The quantization step of a QDQ model's first output: the scale of the ``DequantizeLinear``
    that produces it, or None when that output is computed in float (a detector's post-processing,
    kept float)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    producer = {o: n for n in graph.node for o in n.output}.get(graph.output[0].name)
    if producer is None or producer.op_type != "DequantizeLinear":
        return None
    scale = {t.name: t for t in graph.initializer}.get(producer.input[1])
    return None if scale is None else float(numpy_helper.to_array(scale).max())


def kernel_error(onnx_path: str | Path, x: np.ndarray, *, threads: int = 2) -> dict[str, float | None]:
    """How far ONNX Runtime's integer kernels are from the same QDQ model run in float (graph
    optimizations off: every ``DequantizeLinear`` executed, float kernels), over the images ``x``
    fed one at a time: the largest absolute difference relative to the largest output (``rel``)
    and in steps of the quantized output (``steps``; None where :func:`output_step` is None).
    Correct kernels differ by rounding only, a step or two; saturating ones by many."""
    from common import backends

    outputs = []
    for optimize in (True, False):
        run = backends.load(onnx_path, threads=threads, optimize=optimize)
        outputs.append(np.concatenate([run(x[i:i + 1]) for i in range(len(x))]))
    kernels, simulated = outputs
    diff = float(np.abs(kernels - simulated).max())
    step = output_step(onnx_path)
    return {"rel": diff / float(np.abs(simulated).max()), "steps": None if step is None else diff / step}
