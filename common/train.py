"""Training loops, on whichever device the notebook asked for (:func:`common.env.compute_device`).

- :func:`fit_classifier`: SGD + Nesterov, one-cycle LR, random shifts (the ResNet-18 recipe; hw6
  passes a distillation ``loss_fn``).
- :func:`fit_detector`: ultralytics' trainer, deterministic, quiet, returning the fp32 EMA model.
- :func:`finetune_detector`: our own loop over ultralytics' data and loss, for detectors whose
  layers were pruned, tied or wrapped (ultralytics' trainer rebuilds the model from its yaml).
- :func:`recalibrate_bn` and :func:`finetune`: the short repair every compressed model gets.

Models go to the compute device for the work and come back on the CPU, in eval mode; random
augmentation is drawn on the CPU, so a seed gives the same batches on every device.
:func:`common.workloads.baseline` trains through these, and this file is part of the training
fingerprint (:data:`common.workloads.TRAINING_SOURCES`). ``Baseline`` in the signatures is
:class:`common.workloads.Baseline` (not imported: workloads imports this module).
"""

from __future__ import annotations

import contextlib
import io
from copy import deepcopy
from pathlib import Path

from common import data as data_mod
from common import env, models


def _shift_batch(x, pad: int, gen, flip: bool):
    """Random translation by up to ``pad`` pixels (and horizontal flip) of a whole batch."""
    import torch
    import torch.nn.functional as F

    if pad:
        h, w = x.shape[-2:]
        xp = F.pad(x, (pad, pad, pad, pad))
        ox, oy = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
        x = xp[..., oy:oy + h, ox:ox + w]
    if flip and bool(torch.randint(0, 2, (1,), generator=gen)):
        x = x.flip(-1)
    return x


def fit_classifier(model, data, *, epochs: int, lr: float, batch: int = 64, seed: int = 0,
                   label_smoothing: float = 0.1, loss_fn=None, desc: str = "training",
                   progress: bool = True, validate: bool = True) -> list[dict]:
    """Train (or fine-tune) a classifier in place: SGD + Nesterov, one-cycle LR, random shifts.

    ``loss_fn(logits, x, y)`` replaces cross-entropy (hw6 uses it for distillation).
    Returns the per-epoch history: loss and (``validate``) validation accuracy. ``validate=False``
    skips that evaluation, which changes nothing else: a short fine-tune whose curve nobody reads
    would spend as long scoring the validation split as training.
    """
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm  # text bars: no ipywidgets needed, no warnings

    if epochs < 1 or batch < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 1, batch >= 1 and lr > 0, got {epochs}, {batch}, {lr}")
    x_train, y_train = data.x_train, data.y_train
    dev = env.compute_device()
    # channels-last is an exact fp32 layout change that oneDNN runs ~1.7x faster on CPU
    model.to(dev, memory_format=torch.channels_last)
    steps_per_epoch = (len(y_train) + batch - 1) // batch
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    pad = max(1, data.img_size // 16)
    history: list[dict] = []
    bar = tqdm(range(epochs), desc=desc, disable=not progress)
    for epoch in bar:
        model.train()
        perm = torch.randperm(len(y_train), generator=gen)
        total, count = 0.0, 0
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            x = _shift_batch(x_train[idx], pad, gen, data.flip).to(  # shifts drawn on the CPU
                dev, memory_format=torch.channels_last)                # whatever the device
            y = y_train[idx].to(dev)
            logits = model(x)
            loss = (loss_fn(logits, x, y) if loss_fn is not None
                    else F.cross_entropy(logits, y, label_smoothing=label_smoothing))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach().item() * len(idx)
            count += len(idx)
        history.append({"epoch": epoch + 1, "loss": total / count})
        if validate:
            val_acc = float((models.predict_classes(model, data.x_val) == data.y_val.numpy()).mean())
            history[-1]["val_accuracy"] = val_acc
        bar.set_postfix(loss=f"{total / count:.3f}", **({"val_acc": f"{history[-1]['val_accuracy']:.3f}"} if validate else {}))
    model.to("cpu", memory_format=torch.contiguous_format).eval()
    return history


def _quiet_epoch_bar(model, epochs: int, desc: str):
    """Attach a tqdm bar over epochs to an ultralytics model (its own logs are silenced)."""
    from tqdm import tqdm  # text bars: no ipywidgets needed, no warnings

    bar = tqdm(total=epochs, desc=desc)
    history: list[dict] = []

    def on_epoch_end(trainer):
        losses = {k.split("/")[-1]: round(float(v), 5) for k, v in
                  trainer.label_loss_items(trainer.tloss, prefix="train").items()}
        history.append({"epoch": trainer.epoch + 1, **losses})
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})

    model.add_callback("on_train_epoch_end", on_epoch_end)
    return bar, history


def fit_detector(model, data_yaml: str, *, epochs: int, img_size: int, batch: int, lr: float,
                 seed: int = 0, project: Path, desc: str = "training", **overrides
                 ) -> tuple[list[dict], "torch.nn.Module"]:
    """Train an ultralytics YOLO model (on :func:`common.env.compute_device`, deterministic, no
    plots or per-epoch validation).

    Returns the per-epoch losses and the final EMA model in full fp32: ultralytics writes its
    checkpoints in fp16, which would silently make every "fp32" baseline an fp16-rounded one
    (lossless fp16 conversions, and gzip finding 13 zero mantissa bits in every weight).
    ``overrides`` go to ``YOLO.train``.

    Short from-scratch CPU schedules learn fastest here with AdamW at a fixed ``lr0``, one
    warm-up epoch and no mosaic (measured on ``shapes``: 30 epochs, mosaic off, mAP50-95 0.60
    vs 0.36 with ultralytics' defaults at 25 epochs)."""
    args = dict(data=str(data_yaml), epochs=epochs, imgsz=img_size, batch=batch, device=models.ultralytics_device(),
                workers=0, seed=seed, deterministic=True, plots=False, val=False, amp=False,
                optimizer="AdamW", lr0=lr, warmup_epochs=1, mosaic=0.0,
                project=str(project), name="train", exist_ok=True, verbose=False)
    args.update(overrides)
    bar, history = _quiet_epoch_bar(model, epochs, desc)
    final: dict = {}
    model.add_callback("on_train_end",
                       lambda trainer: final.setdefault("model", deepcopy(trainer.ema.ema).float()))
    try:
        # ultralytics' own bars (image caching, for one) print run-dependent rates to stdout even
        # when it is told to be quiet; the epoch bar above replaces them
        with contextlib.redirect_stdout(io.StringIO()):
            model.train(**args)
    finally:
        bar.close()
    return history, final["model"].cpu().eval()


def finetune_detector(model, bl: "Baseline", *, epochs: float = 1, lr: float = 1e-3,
                      batch: int | None = None, seed: int = 0, after_step=None, extra_loss=None,
                      desc: str = "fine-tuning", progress: bool = True) -> list[dict]:
    """Fine-tune a YOLO ``DetectionModel`` module in place with our own loop over ultralytics'
    dataset, augmentation and loss (the ones the baseline was trained with).

    ultralytics' trainer rebuilds its model from the yaml, so it cannot train a module whose
    layers were pruned, tied or wrapped; this loop can. ``after_step(model)`` runs after every
    optimizer step (e.g. re-apply pruning masks or cluster ties); ``extra_loss(model, batch,
    preds)`` adds a term (e.g. distillation). ``epochs`` may be fractional. Returns the
    per-epoch mean loss history."""
    import math

    import torch
    from tqdm import tqdm  # text bars: no ipywidgets needed, no warnings
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    if epochs <= 0 or lr <= 0:
        raise ValueError(f"need epochs > 0 and lr > 0, got {epochs}, {lr}")
    models.ultralytics_setup()
    cfg = bl.config
    batch = batch or cfg.batch
    args = get_cfg(overrides={"imgsz": cfg.img_size, "mosaic": 0.0, "batch": batch, "workers": 0,
                              "seed": seed, "deterministic": True})
    info = check_det_dataset(str(bl.data))
    env.seed_everything(seed)
    dataset = build_yolo_dataset(args, info["train"], batch, info, mode="train", stride=32)
    loader = build_dataloader(dataset, batch, workers=0, shuffle=True, device="cpu")  # batches made on the CPU
    dev = env.compute_device()
    model.to(dev)
    steps = max(1, math.ceil(epochs * len(loader)))
    model.args = args
    model.criterion = None  # rebuilt for the (possibly pruned) head
    for name, p in model.named_parameters():  # as ultralytics' trainer: the DFL projection
        p.requires_grad_(".dfl" not in name)     # (fixed 0..15 weights) is never trained
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                            weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)  # linear decay to 0
    history, it, step = [], iter(loader), 0
    bar = tqdm(total=steps, desc=desc, disable=not progress)
    model.train()
    try:
        total = count = 0.0
        while step < steps:
            try:
                b = next(it)
            except StopIteration:  # one pass over the data done: the next epoch
                it = iter(loader)
                b = next(it)
            b = {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in b.items()}
            b["img"] = b["img"].float() / 255
            preds = model(b["img"])
            loss, _ = model.loss(b, preds)
            loss = loss.sum()
            if extra_loss is not None:
                loss = loss + extra_loss(model, b, preds)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            sched.step()
            if after_step is not None:
                after_step(model)
            step += 1
            total += float(loss.detach()) / batch
            count += 1
            bar.update(1)
            if step % len(loader) == 0 or step == steps:
                history.append({"step": step, "loss": total / count})
                bar.set_postfix(loss=f"{total / count:.3f}")
                total = count = 0.0
    finally:
        bar.close()
        model.criterion = None  # do not carry the loss object into saved models
        model.to("cpu").eval()
    return history


def recalibrate_bn(model, x, batch: int = 128):
    """Re-estimate every BatchNorm's running mean / variance on images ``x`` (forward passes in
    train mode, no gradients, exact averages), in place. Pruning or clustering shifts the
    activation statistics a BN layer normalises with; re-estimating them is the cheapest
    repair there is, and it comes before any fine-tune."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    was_training = model.training
    model.train()
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
        with torch.no_grad():
            for i in range(0, len(x), batch):
                model(x[i:i + batch])
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        model.train(was_training)
    return model


def finetune(bl: "Baseline", model, *, epochs: float = 1, lr: float | None = None,
             images: int | None = None, seed: int = 0, desc: str = "fine-tuning",
             progress: bool = True, recalibrate: bool = True, **kwargs) -> list[dict]:
    """Short fine-tune of a compressed copy of ``bl``'s model, in place, with the baseline's
    recipe: the classifier with :func:`recalibrate_bn` then :func:`fit_classifier` (on ``images``
    random training images when given; ``epochs`` rounded up to a whole number), the detector with
    :func:`finetune_detector`. ``lr`` defaults to a fifth of the recipe's (classifier) or
    1e-3 (detector, AdamW). ``kwargs`` go to the workload's fine-tune function; the classifier's
    skips the per-epoch validation score unless ``validate=True`` is among them."""
    import math

    if bl.config.workload == "resnet18":
        ds = bl.data if images is None else data_mod.subset(bl.data, images, "train", seed)
        if recalibrate:
            recalibrate_bn(model, ds.x_train)
        return fit_classifier(model, ds, epochs=max(1, math.ceil(epochs)), lr=lr or bl.config.lr / 5,
                              batch=bl.config.batch, seed=seed, desc=desc, progress=progress,
                              **{"validate": False, **kwargs})
    if images is not None:
        raise ValueError("images= (a training subset) applies to the classifier; give the detector "
                         "a fractional epochs= instead")
    return finetune_detector(model, bl, epochs=epochs, lr=lr or 1e-3, seed=seed, desc=desc,
                             progress=progress, **kwargs)
