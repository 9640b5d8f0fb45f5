"""Pruning: unstructured magnitude pruning (from scratch and with ``torch.nn.utils.prune``),
honest sparse storage, and structured channel pruning with torch-pruning.

Unstructured pruning zeroes individual weights; the tensors keep their shape, so a dense
file does not shrink and dense kernels do not get faster. What does shrink is a sparse
encoding (here: a bitmask of the non-zeros plus their values), and gzip finds the zeros too.
Structured pruning removes whole channels, so the model really becomes smaller and faster.
"""

from __future__ import annotations

import io
import zipfile
from copy import deepcopy
from pathlib import Path
from typing import Iterable

import numpy as np

from common import files, layers as layers_mod

UNSTRUCTURED_SCOPES = ("global", "local")
CRITERIA = ("l1", "l2", "fpgm")


class PruningError(ValueError):
    """A pruning request that cannot be carried out (bad ratio, criterion or layer)."""


def check_ratio(ratio: float, what: str = "sparsity") -> float:
    """``ratio`` as a float in [0, 1), or a clear error."""
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise PruningError(f"{what} must be a number in [0, 1), got {ratio!r}") from None
    if not 0.0 <= r < 1.0:
        raise PruningError(f"{what} must be in [0, 1), got {ratio!r}")
    return r


def check_criterion(criterion: str) -> str:
    if criterion not in CRITERIA:
        raise PruningError(f"unknown criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
    return criterion


def prunable_layers(model) -> dict[str, "torch.nn.Module"]:
    """Conv and Linear layers by qualified name that magnitude pruning acts on: every one but the
    fixed layers (YOLO's DFL projection, :mod:`common.layers`)."""
    return layers_mod.compressible_layers(model)


def check_layers(model, names: Iterable[str]) -> list[str]:
    """The requested layer names, or one error listing those that do not exist."""
    layers = prunable_layers(model)
    names = list(names)
    fixed = [n for n in names if layers_mod.is_fixed(n)]
    if fixed:
        raise PruningError(f"{fixed} fixed (YOLO's DFL projection: weights 0..15 that decode boxes, "
                           f"never trained) and never pruned; see common.layers")
    missing = [n for n in names if n not in layers]
    if missing:
        some = ", ".join(list(layers)[:8])
        raise PruningError(f"no prunable (Conv2d / Linear) layer named {missing}; the model has "
                           f"{len(layers)}, e.g. {some}, ...")
    return names


# --------------------------------------------------------------------------- unstructured

def magnitude_mask(weight: "torch.Tensor", sparsity: float) -> "torch.Tensor":
    """From scratch: the keep-mask that zeroes the ``round(sparsity * n)`` smallest |w|.

    Ties at the threshold are broken by position, the way ``torch.topk`` does in the library
    (``torch.nn.utils.prune.l1_unstructured``), so both masks agree element for element."""
    import torch

    sparsity = check_ratio(sparsity)
    n = weight.numel()
    k = int(round(sparsity * n))  # number of weights to remove (same rounding as the library)
    mask = torch.ones(n, dtype=weight.dtype)
    if k:
        idx = torch.topk(weight.detach().abs().flatten(), k, largest=False).indices
        mask[idx] = 0
    return mask.view_as(weight)


def global_magnitude_masks(weights: dict[str, "torch.Tensor"], sparsity: float
                           ) -> dict[str, "torch.Tensor"]:
    """From scratch: one threshold over all tensors together (global pruning)."""
    import torch

    sparsity = check_ratio(sparsity)
    flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    k = int(round(sparsity * flat.numel()))
    keep = torch.ones_like(flat)
    if k:
        keep[torch.topk(flat, k, largest=False).indices] = 0
    out, start = {}, 0
    for name, w in weights.items():
        out[name] = keep[start:start + w.numel()].view_as(w)
        start += w.numel()
    return out


def prune_unstructured(model, sparsity: float, scope: str = "global",
                       layers: Iterable[str] | None = None, skip: Iterable[str] = ()):
    """L1 magnitude pruning with ``torch.nn.utils.prune`` on a copy of ``model``.

    ``scope='global'``: one threshold across all chosen layers; ``'local'``: the same
    ``sparsity`` in every layer. ``layers`` (default: every Conv2d / Linear) may also be a
    dict ``{name: sparsity}`` for non-uniform local ratios. The masks stay attached
    (``weight = weight_orig * weight_mask``) so fine-tuning keeps pruned weights at zero;
    :func:`finalize` makes them permanent."""
    import torch.nn.utils.prune as prune

    if scope not in UNSTRUCTURED_SCOPES:
        raise PruningError(f"unknown scope {scope!r}; choose one of {', '.join(UNSTRUCTURED_SCOPES)}")
    ratios: dict[str, float]
    if isinstance(layers, dict):
        if scope != "local":
            raise PruningError("per-layer ratios need scope='local'")
        ratios = {n: check_ratio(r) for n, r in layers.items()}
    else:
        sparsity = check_ratio(sparsity)
        names = list(layers) if layers is not None else list(prunable_layers(model))
        ratios = {n: sparsity for n in names if n not in set(skip)}
    check_layers(model, ratios)
    model = deepcopy(model)
    mods = prunable_layers(model)
    if scope == "global":
        params = [(mods[n], "weight") for n in ratios]
        if sparsity > 0:
            prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=sparsity)
    else:
        for n, r in ratios.items():
            if r > 0:
                prune.l1_unstructured(mods[n], "weight", amount=r)
    return model


def masks(model) -> dict[str, "torch.Tensor"]:
    """The pruning masks attached by ``torch.nn.utils.prune``, by layer name."""
    return {n: m.weight_mask for n, m in model.named_modules() if hasattr(m, "weight_mask")}


def finalize(model):
    """Make attached pruning masks permanent (``prune.remove``) in place; returns the model."""
    import torch.nn.utils.prune as prune

    for m in model.modules():
        if hasattr(m, "weight_mask"):
            prune.remove(m, "weight")
    return model


def finalized(model):
    """A copy of a masked model with the masks made permanent (plain, zero-filled weights);
    the masked model itself is left as it is, e.g. to go on fine-tuning."""
    import torch

    with torch.no_grad():  # refresh weight = weight_orig * mask as a leaf (it may hold a graph)
        for m in model.modules():
            if hasattr(m, "weight_mask"):
                m.weight = m.weight_orig * m.weight_mask
    return finalize(deepcopy(model))


# --------------------------------------------------------------------------- sparse storage

def save_sparse(model, path: str | Path) -> Path:
    """Store ``model``'s state dict with every Conv / Linear weight as a bitmask of its
    non-zeros (1 bit per weight) plus the non-zero values (fp32); everything else dense.

    The file is an uncompressed ``.npz`` (a zip archive with STORED entries), so its size is
    the encoding's size, not gzip's. Reload with :func:`load_sparse`."""
    path = Path(path)
    layer_weights = {f"{n}.weight" for n in prunable_layers(model)}
    arrays: dict[str, np.ndarray] = {}
    for key, t in model.state_dict().items():
        a = t.detach().cpu().numpy()
        if key in layer_weights:
            nz = a != 0
            arrays[f"mask::{key}"] = np.packbits(nz.ravel())
            arrays[f"values::{key}"] = a[nz].astype(np.float32)
            arrays[f"shape::{key}"] = np.asarray(a.shape, dtype=np.int32)
        else:
            arrays[f"dense::{key}"] = a
    with files.atomic(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path


def load_sparse(model, path: str | Path):
    """Load a :func:`save_sparse` file into (a copy of) a model of the same architecture."""
    import torch

    arrays = np.load(Path(path))
    state = {}
    for name in arrays.files:
        kind, key = name.split("::", 1)
        if kind == "dense":
            state[key] = torch.from_numpy(arrays[name].copy())
        elif kind == "mask":
            shape = tuple(arrays[f"shape::{key}"])
            nz = np.unpackbits(arrays[name], count=int(np.prod(shape))).astype(bool)
            dense = np.zeros(nz.shape, dtype=np.float32)
            dense[nz] = arrays[f"values::{key}"]
            state[key] = torch.from_numpy(dense.reshape(shape))
    model = deepcopy(model)
    model.load_state_dict(state)
    return model


def identical(a, b) -> bool:
    """Whether two models hold exactly the same tensors under the same names (order-free:
    ``prune.remove`` re-registers ``weight`` after ``bias``, so state-dict order can differ)."""
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def sparse_stats(path: str | Path) -> dict[str, int]:
    """Bytes in a :func:`save_sparse` file by part: masks, non-zero values, dense rest
    (each array with its 128-byte ``.npy`` header; the zip directory is not counted)."""
    out = {"mask": 0, "values": 0, "dense": 0, "shape": 0}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            out[info.filename.split("::", 1)[0]] += info.file_size
    return out


# --------------------------------------------------------------------------- structured

def importance(criterion: str):
    """torch-pruning's channel importance for a criterion: L1 / L2 norm of each channel's
    weights, or FPGM (distance to the geometric median of the layer's filters)."""
    import torch_pruning as tp

    check_criterion(criterion)
    if criterion == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if criterion == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    return tp.importance.FPGMImportance(p=2)


def _split_conv(conv, lo: int, hi: int):
    """A copy of an ultralytics ``Conv`` (conv + BN + act) keeping output channels lo:hi."""
    import torch.nn as nn

    new = deepcopy(conv)
    c = conv.conv
    new.conv = nn.Conv2d(c.in_channels, hi - lo, c.kernel_size, c.stride, c.padding, c.dilation,
                         c.groups, bias=c.bias is not None)
    new.conv.weight.data = c.weight.data[lo:hi].clone()
    if c.bias is not None:
        new.conv.bias.data = c.bias.data[lo:hi].clone()
    bn = conv.bn
    new.bn = nn.BatchNorm2d(hi - lo, eps=bn.eps, momentum=bn.momentum)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new.bn, name).data = getattr(bn, name).data[lo:hi].clone()
    new.bn.num_batches_tracked = bn.num_batches_tracked.clone()
    return new.train(conv.training)


def _c2f_split_class():
    """``C2fSplit``: ultralytics' C2f with its first 1x1 conv split in two, the same function.

    C2f runs ``cv1`` and then ``chunk(2)`` on its output; torch-pruning cannot follow a channel
    through that chunk (it indexes past the halves), so the two halves become two convolutions,
    as in torch-pruning's own YOLOv8 example."""
    import torch
    import torch.nn as nn

    class C2fSplit(nn.Module):
        def __init__(self, c2f):
            super().__init__()
            c = c2f.c
            self.cv0 = _split_conv(c2f.cv1, 0, c)
            self.cv1 = _split_conv(c2f.cv1, c, 2 * c)
            self.cv2, self.m = c2f.cv2, c2f.m
            for attr in ("i", "f", "type", "np"):  # ultralytics' graph bookkeeping
                if hasattr(c2f, attr):
                    setattr(self, attr, getattr(c2f, attr))

        def forward(self, x):
            y = [self.cv0(x), self.cv1(x)]
            y.extend(m(y[-1]) for m in self.m)
            return self.cv2(torch.cat(y, 1))

    return C2fSplit


def __getattr__(name: str):
    """``common.pruning.C2fSplit`` is built on first use (torch imported lazily); pickles of
    pruned detectors name it, and ``torch.load`` finds it here in a fresh process too."""
    if name == "C2fSplit":
        cls = _c2f_split_class()
        cls.__module__, cls.__qualname__ = __name__, "C2fSplit"
        globals()["C2fSplit"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def split_c2f(model):
    """Replace every ultralytics ``C2f`` in (a copy of) a detector with the equivalent
    ``C2fSplit``, so torch-pruning can prune it; outputs are unchanged."""
    from ultralytics.nn.modules.block import C2f

    cls = __getattr__("C2fSplit") if "C2fSplit" not in globals() else globals()["C2fSplit"]
    model = deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is C2f:
                setattr(parent, name, cls(child))
    return model


def detector_ignored_layers(model) -> list:
    """Layers of a YOLO detection model whose output channels must stay: the head's final
    box / class convolutions and the DFL (their channel counts are the output format)."""
    head = model.model[-1]
    ignored = [head.dfl] if hasattr(head, "dfl") else []
    for branch in (*head.cv2, *head.cv3):
        ignored.append(branch[-1])
    return ignored


def prune_channels(model, example_input, ratio: float, criterion: str = "l1",
                   ignored: Iterable | None = None, round_to: int | None = None):
    """Remove ``ratio`` of the channels of every prunable group of a copy of ``model`` with
    torch-pruning (dependency graph: a channel is removed together with every layer that
    consumes it), ranked by ``criterion``. Returns the smaller model (real, not masked).

    ``ignored``: layers whose output channels are kept (default: the classifier's last Linear,
    or a YOLO head's output convolutions)."""
    import torch
    import torch.nn as nn
    import torch_pruning as tp

    ratio = check_ratio(ratio, "channel pruning ratio")
    check_criterion(criterion)
    model = deepcopy(model).eval()
    x = torch.as_tensor(example_input)
    for p in model.parameters():
        p.requires_grad_(True)
    is_detector = hasattr(model, "model") and hasattr(model.model[-1], "cv2")
    if is_detector:
        model = split_c2f(model)
    if ignored is None:
        if is_detector:
            ignored = detector_ignored_layers(model)
        else:
            linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
            ignored = linears[-1:]
    if ratio == 0:
        return model
    with torch.enable_grad():  # the dependency graph is traced through autograd
        pruner = tp.pruner.MetaPruner(model, x, importance=importance(criterion), pruning_ratio=ratio,
                                      ignored_layers=list(ignored), round_to=round_to)
        pruner.step()
    return model


def save_module(model, path: str | Path) -> Path:
    """``torch.save`` a whole (pruned) module, atomically; it reloads as the smaller model."""
    import torch

    buf = io.BytesIO()
    torch.save(model, buf)
    return files.write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------- sensitivity plans

def sensitivity_groups(model, workload: str) -> dict[str, list[str]]:
    """The units a sensitivity scan prunes one at a time: each prunable layer of the classifier;
    each block of the detector (``model.<i>.…`` -> ``block ii``: 22 blocks, not 63 layers)."""
    names = list(prunable_layers(model))
    if workload == "resnet18":
        return {n: [n] for n in names}
    out: dict[str, list[str]] = {}
    for n in names:
        out.setdefault(f"block {int(n.split('.')[1]):02d}", []).append(n)
    return out


#: relative validation drop -> the sparsity a group gets in a sensitivity-guided plan: a group
#: whose pruning alone costs >= 5 % of the quality keeps 70 % of its weights, >= 1 % keeps half
TIERS = ((0.05, 0.3), (0.01, 0.5))


def sensitivity_plan(drops: dict[str, float], reference: float, groups: dict[str, list[str]],
                     numel: dict[str, int], overall: float, tiers=TIERS,
                     cap: float = 0.95) -> dict[str, float]:
    """Per-layer sparsities that reach ``overall`` sparsity of all weights, guided by a scan.

    ``drops[g]`` is the quality lost when group ``g`` alone is pruned (``reference`` minus its
    score). A group whose relative drop reaches a tier's threshold gets that tier's sparsity
    (``tiers``: (threshold, sparsity), highest threshold first); every other layer gets the
    one sparsity that makes the weighted total ``overall``, clipped to [0, ``cap``] (so a plan
    with too many sensitive layers falls short of ``overall``: the caller measures it)."""
    overall = check_ratio(overall)
    tiers = sorted(tiers, reverse=True)
    tier: dict[str, float | None] = {}
    for g, names in groups.items():
        rel = drops[g] / reference if reference else 0.0
        r = next((s for t, s in tiers if rel >= t), None)
        tier.update({n: r for n in names})
    fixed = sum(r * numel[n] for n, r in tier.items() if r is not None)
    free = sum(numel[n] for n, r in tier.items() if r is None)
    r_free = min(cap, max(0.0, (overall * sum(numel[n] for n in tier) - fixed) / max(1, free)))
    return {n: (r if r is not None else round(r_free, 4)) for n, r in tier.items()}
