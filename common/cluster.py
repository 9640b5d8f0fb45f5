"""Weight clustering (weight sharing): k-means per layer, tied fine-tuning, palette storage.

Deep Compression (Han et al., 2016) replaces each layer's weights by ``k`` shared values: the
layer then stores a codebook of ``k`` floats plus, per weight, an index of ``ceil(log2 k)``
bits. A dense float32 file of a clustered model is exactly as large as before (every weight is
still four bytes), which is why clustered sizes only shrink once the model is compressed (gzip
finds the repeated values) or written as a palette (:func:`save_palette`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from common import files

#: initialisations of :func:`kmeans_1d`: ``linear`` spaces the centroids evenly between the
#: smallest and the largest weight (Deep Compression's recommendation: it keeps the rare large
#: weights); ``kmeans++`` draws them with D^2 sampling; ``density`` puts them at evenly spaced
#: quantiles of the weights
INITS = ("linear", "kmeans++", "density")


class ClusteringError(ValueError):
    """Clustering settings that make no sense (fewer than 2 clusters, more clusters than
    distinct weights, an unknown initialisation)."""


def check_clusters(k, weights=None) -> int:
    """``k`` as an int, or a clear error: k >= 2 and, given ``weights``, at most as many
    clusters as the tensor has distinct values."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ClusteringError(f"the number of clusters must be an integer >= 2, got {k!r}")
    if weights is not None:
        distinct = len(np.unique(_numpy(weights)))
        if k > distinct:
            raise ClusteringError(f"{k} clusters asked for a tensor with only {distinct} distinct values")
    return int(k)


def check_init(init: str) -> str:
    if init not in INITS:
        raise ClusteringError(f"unknown initialisation {init!r}; valid: {', '.join(INITS)}")
    return init


def _numpy(w) -> np.ndarray:
    if hasattr(w, "detach"):
        w = w.detach().cpu().numpy()
    return np.asarray(w, dtype=np.float64).ravel()


def init_centroids(w, k: int, init: str = "linear", seed: int = 0) -> np.ndarray:
    """Starting centroids for :func:`kmeans_1d` (sorted)."""
    x = _numpy(w)
    k = check_clusters(k, x)
    check_init(init)
    if init == "linear":
        c = np.linspace(x.min(), x.max(), k)
    elif init == "density":
        c = np.quantile(x, (np.arange(k) + 0.5) / k)
    else:  # k-means++: each next centroid drawn with probability proportional to D(x)^2
        rng = np.random.default_rng(seed)
        c = [x[rng.integers(len(x))]]
        d2 = (x - c[0]) ** 2
        for _ in range(1, k):
            total = d2.sum()
            nxt = x[rng.choice(len(x), p=d2 / total)] if total > 0 else x[rng.integers(len(x))]
            c.append(nxt)
            d2 = np.minimum(d2, (x - nxt) ** 2)
        c = np.array(c)
    return np.sort(c)


def assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid for every value (centroids sorted): a binary search on the
    midpoints between neighbours, O(n log k) instead of an n x k distance matrix."""
    mids = (centroids[1:] + centroids[:-1]) / 2
    return np.searchsorted(mids, x, side="left")


def kmeans_1d(w, k: int, init: str = "linear", iters: int = 100, seed: int = 0, tol: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on the scalar values of ``w``, from scratch: ``(centroids, labels)``,
    centroids sorted ascending (float64), labels in ``w``'s flattened order. A cluster that
    loses all its members keeps its centroid."""
    x = _numpy(w)
    c = init_centroids(x, k, init, seed)
    # in 1-D a cluster is an interval: on the sorted values, every Lloyd step is k binary
    # searches and prefix-sum differences, O(k log n) instead of O(n k)
    xs = np.sort(x)
    prefix = np.concatenate([[0.0], np.cumsum(xs)])
    for _ in range(iters):
        ends = np.append(np.searchsorted(xs, (c[1:] + c[:-1]) / 2, side="right"), len(xs))
        starts = np.concatenate([[0], ends[:-1]])
        counts = ends - starts
        new = np.where(counts > 0, (prefix[ends] - prefix[starts]) / np.maximum(counts, 1), c)
        new = np.sort(new)
        moved = np.abs(new - c).max()
        c = new
        if moved <= tol:
            break
    return c, assign(x, c)


def inertia(w, centroids: np.ndarray, labels: np.ndarray) -> float:
    """Sum of squared distances of the values to their centroids (what k-means minimises)."""
    x = _numpy(w)
    return float(((x - centroids[labels]) ** 2).sum())


def bits_per_index(k: int) -> int:
    return max(1, math.ceil(math.log2(k)))


# --------------------------------------------------------------------------- models

def clusterable_layers(model) -> dict[str, "torch.nn.Module"]:
    """Conv and Linear layers, by name, whose weights get clustered: the compressible layers
    (:func:`common.layers.compressible_layers`: YOLO's fixed DFL projection excepted) with more
    than one weight. Biases and norms stay float: they are a fraction of a percent of the weights."""
    from common.layers import compressible_layers

    return {n: m for n, m in compressible_layers(model).items() if m.weight.numel() > 1}


def _clustered_weight_class():
    import torch
    import torch.nn as nn

    class Gather(torch.autograd.Function):
        """``codebook[labels]`` whose backward sums the weights' gradients per centroid with
        one ``bincount`` (a sequential, deterministic pass), instead of the generic index
        backward, a scatter-add that ``torch.use_deterministic_algorithms`` turns into a sort."""

        @staticmethod
        def forward(ctx, codebook, labels, scale):
            ctx.save_for_backward(labels, scale)
            return codebook[labels]

        @staticmethod
        def backward(ctx, grad):
            labels, scale = ctx.saved_tensors
            g = torch.bincount(labels, weights=grad.reshape(-1).double(), minlength=len(scale))
            return g.to(grad.dtype) * scale, None, None

    class ClusteredWeight(nn.Module):
        """Parametrization ``weight = codebook[labels]``: the layer's weights stay tied to their
        centroids and an optimizer step moves whole clusters. Autograd gives each centroid the
        sum of its weights' gradients (Deep Compression's update); with ``average`` it is
        divided by the cluster's size, so a centroid steps like one weight would (with SGD the
        sum would move a 100 000-weight cluster 100 000 times too far)."""

        def __init__(self, codebook, labels, shape, average: bool = True):
            super().__init__()
            self.codebook = nn.Parameter(torch.as_tensor(codebook, dtype=torch.float32))
            self.register_buffer("labels", torch.as_tensor(labels, dtype=torch.long).reshape(-1))
            self.shape = tuple(shape)
            counts = torch.bincount(self.labels, minlength=len(self.codebook)).clamp_min(1)
            self.register_buffer("scale", 1 / counts.to(torch.float32) if average
                                 else torch.ones(len(self.codebook)))

        def forward(self, _original):
            return Gather.apply(self.codebook, self.labels, self.scale).view(self.shape)

    return ClusteredWeight


def cluster_model(model, k: int, init: str = "linear", *, iters: int = 100, seed: int = 0,
                  tie: bool = False, average_grads: bool = True, layers: dict | None = None
                  ) -> dict[str, dict]:
    """Cluster every layer of ``layers`` (default :func:`clusterable_layers`) of ``model`` in
    place to ``k`` shared values. With ``tie`` the weights become a parametrization
    ``codebook[labels]`` (train the codebooks, then :func:`untie`; ``average_grads``: each
    centroid gets the mean of its weights' gradients, else their sum); without, they are simply
    overwritten by their centroids. Returns per layer the codebook, labels and k-means inertia."""
    import torch
    from torch.nn.utils import parametrize

    k = check_clusters(k)
    check_init(init)
    layers = clusterable_layers(model) if layers is None else layers
    info: dict[str, dict] = {}
    cls = _clustered_weight_class() if tie else None
    for name, m in layers.items():
        w = m.weight.detach()
        kk = min(k, len(torch.unique(w)))  # a layer with fewer distinct values keeps them all
        c, labels = kmeans_1d(w, kk, init, iters, seed)
        info[name] = {"codebook": c.astype(np.float32), "labels": labels, "inertia": inertia(w, c, labels)}
        if tie:
            parametrize.register_parametrization(m, "weight", cls(c, labels, w.shape, average_grads),
                                                 unsafe=True)
        else:
            with torch.no_grad():
                m.weight.copy_(torch.as_tensor(c[labels], dtype=w.dtype).view_as(w))
    return info


def untie(model) -> "torch.nn.Module":
    """Remove :func:`cluster_model`'s parametrizations, keeping the tied weights as plain
    parameters. In place.

    ``torch.nn.utils.parametrize.remove_parametrizations`` would delete the ``weight`` property
    from the parametrized *class*, which a ``copy.deepcopy`` of the model shares: untying a copy
    that way breaks the original. This swaps each module back to its own plain class instead."""
    import torch
    from torch.nn.utils import parametrize

    for m in model.modules():
        if not parametrize.is_parametrized(m):
            continue
        if set(m.parametrizations.keys()) != {"weight"}:
            raise ClusteringError(f"{type(m).__name__} has parametrizations other than weight: "
                                  f"{sorted(m.parametrizations.keys())}")
        w = m.weight.detach().clone()
        requires_grad = m.parametrizations.weight.original.requires_grad
        m.__class__ = m.__class__.__bases__[0]   # the plain Conv2d / Linear again
        del m._modules["parametrizations"]
        m.weight = torch.nn.Parameter(w, requires_grad=requires_grad)
    return model


def unique_values(model, layers: dict | None = None) -> dict[str, int]:
    """Distinct weight values per clustered layer (the check that clustering held)."""
    import torch

    layers = clusterable_layers(model) if layers is None else layers
    return {n: int(len(torch.unique(m.weight.detach()))) for n, m in layers.items()}


# --------------------------------------------------------------------------- palette storage

def _pack(labels: np.ndarray, bits: int) -> np.ndarray:
    """Indices as a little-endian bit stream of ``bits`` bits each."""
    b = ((labels[:, None].astype(np.uint32) >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(b.ravel(), bitorder="little")


def _unpack(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    b = np.unpackbits(packed, bitorder="little")[: n * bits].reshape(n, bits).astype(np.int64)
    return (b << np.arange(bits)).sum(1)


def save_palette(model, path: str | Path, layers: dict | None = None) -> Path:
    """Write ``model``'s state as a palette: for every clustered layer its codebook (float32)
    and its weights' indices packed to ``ceil(log2 k)`` bits; every other tensor as it is.
    One uncompressed ``.npz`` (``np.savez``), written atomically."""
    path = Path(path)
    layers = clusterable_layers(model) if layers is None else layers
    weights = {f"{n}.weight" for n in layers}
    arrays: dict[str, np.ndarray] = {}
    for key, t in model.state_dict().items():
        a = t.detach().cpu().numpy()
        if key in weights:
            codebook, inverse = np.unique(a.ravel(), return_inverse=True)
            if len(codebook) > 2 ** 16:
                raise ClusteringError(f"{key} has {len(codebook):,} distinct values: it is not clustered")
            bits = bits_per_index(len(codebook))
            arrays[f"palette/{key}/codebook"] = codebook.astype(np.float32)
            arrays[f"palette/{key}/indices"] = _pack(inverse.astype(np.int64), bits)
            arrays[f"palette/{key}/shape"] = np.array(a.shape, dtype=np.int64)
            arrays[f"palette/{key}/bits"] = np.array(bits, dtype=np.int64)
        else:
            arrays[f"dense/{key}"] = a
    with files.atomic(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return path


def load_palette(model, path: str | Path) -> "torch.nn.Module":
    """Load a :func:`save_palette` file into ``model`` (same architecture), in place."""
    import torch

    z = np.load(Path(path))
    state = {}
    for name in z.files:
        kind, rest = name.split("/", 1)
        if kind == "dense":
            state[rest] = torch.from_numpy(z[name].copy())
        elif rest.endswith("/codebook"):
            key = rest[: -len("/codebook")]
            shape = tuple(z[f"palette/{key}/shape"])
            idx = _unpack(z[f"palette/{key}/indices"], int(z[f"palette/{key}/bits"]), int(np.prod(shape)))
            state[key] = torch.from_numpy(z[name][idx].reshape(shape).copy())
    model.load_state_dict(state)
    return model
