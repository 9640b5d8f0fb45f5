"""Pruning experiments on a trained baseline: the steps hw3 and the capstone run that need data,
training or evaluation (:mod:`common.pruning` holds the algorithms, which need none of those)."""

from __future__ import annotations

from common import pruning


def finetune(bl, model, *, x_bn=None, bn_images: int = 256, seed: int = 0, progress: bool = False,
             **kwargs) -> list[dict]:
    """Fine-tune a pruned copy of ``bl``'s model in place with BatchNorm re-estimated first.

    :func:`common.train.finetune` re-estimates BatchNorm itself for the classifier; for the
    detector this does it, on ``x_bn`` (or ``bn_images`` training images drawn with ``seed``).
    Without it the detector's short fine-tune starts from the cut model's stale statistics, and
    ultralytics' BatchNorm momentum (0.03) barely moves them in half an epoch: L1 pruning of 30 %
    of the channels, fine-tuned half an epoch, scored mAP50-95 0.19 from stale statistics and
    0.43 from re-estimated ones (seed 0). ``kwargs`` (``epochs``, ``lr``, ``images``) go to
    :func:`common.train.finetune`; returns its history."""
    import torch

    from common import train, workloads

    if bl.config.workload != "resnet18":
        if x_bn is None:
            x_bn = workloads.sample_inputs(bl, bn_images, "train", seed=seed)
        train.recalibrate_bn(model, torch.as_tensor(x_bn))
    return train.finetune(bl, model, seed=seed, progress=progress, **kwargs)


def sensitivity_scan(bl, groups: dict[str, list[str]], sparsity: float, metric: str, *,
                     images: int | None = None, seed: int = 0, desc: str = "sensitivity"
                     ) -> tuple[float, dict[str, float]]:
    """Prune one group at a time to ``sparsity`` (local magnitude, no fine-tune) and score it on
    val (``images`` random validation images of the classifier when given). Returns the unpruned
    validation score and the drop of each group."""
    import dataclasses

    from tqdm import tqdm

    from common import data, workloads

    sparsity = pruning.check_ratio(sparsity)
    scan = bl if images is None or bl.config.workload != "resnet18" else dataclasses.replace(
        bl, data=data.subset(bl.data, images, "val", seed))
    ref = workloads.evaluate(scan, split="val")[metric]
    drops = {}
    for g, names in tqdm(groups.items(), desc=desc):
        m = pruning.prune_unstructured(bl.model, 0, "local", layers={n: sparsity for n in names})
        drops[g] = ref - workloads.evaluate(scan, pruning.finalized(m), split="val")[metric]
    return ref, drops
