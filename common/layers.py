"""Which layers compression may touch: one definition for pruning, clustering and quantization.

YOLOv8's DFL projection (``model.22.dfl.conv``) is a 1x1 convolution whose fixed weights 0..15
turn each box side's predicted distribution over 16 bins into a distance. It is never trained
(ultralytics' trainer freezes it, and so does :func:`common.train.finetune_detector`), and
changing any of its 16 weights moves every box: pruning 2 of them (local 10 %) took the shapes
detector from mAP50-95 0.5984 to 0.2958. So it is *fixed*: no pruning, clustering or int8.
"""

from __future__ import annotations

FIXED_MODULES = ("dfl",)   # module names (a component of the qualified name) never compressed


def is_fixed(name: str) -> bool:
    """Whether the layer ``name`` (a qualified module name, e.g. ``model.22.dfl.conv``) is fixed."""
    return any(part in FIXED_MODULES for part in name.split("."))


def is_fixed_onnx_node(name: str) -> bool:
    """The same for an ONNX node of an exported model (e.g. ``/model.22/dfl/conv/Conv``)."""
    return any(f"/{m}/" in name for m in FIXED_MODULES)


def compressible_layers(model) -> dict[str, "torch.nn.Module"]:
    """Conv2d and Linear layers by qualified name, fixed layers (:data:`FIXED_MODULES`) excepted:
    the layers pruning and clustering act on and whose weights int8 quantizes."""
    import torch.nn as nn

    return {n: m for n, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and not is_fixed(n)}


def fixed_layers(model) -> list[str]:
    """The Conv2d / Linear layers of ``model`` that :func:`compressible_layers` leaves out."""
    import torch.nn as nn

    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and is_fixed(n)]
