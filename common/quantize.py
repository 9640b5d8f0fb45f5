"""Post-training int8 quantization to OpenVINO with NNCF (the production path on Intel / AMD
CPUs with VNNI), for both workloads.

- classifier: ``openvino.convert_model`` then ``nncf.quantize`` on calibration images drawn
  from the training split;
- detector: ultralytics' own OpenVINO exporter with ``int8=True``, which runs NNCF with the
  detection head's post-processing kept in float (its ignored scope), calibrated on the
  training split.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from common import data as data_mod


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
