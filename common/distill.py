"""Knowledge distillation: the Hinton loss, checked arguments, and half-size students.

Hinton et al. (2015): the student matches the teacher's temperature-softened class
distribution as well as the labels,

    L = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)

The T^2 factor keeps the soft term's gradients on the same scale as the hard term's when T
changes (the soft gradients shrink as 1 / T^2).
"""

from __future__ import annotations

from common import size


class DistillationError(ValueError):
    """Distillation settings that make no sense (T <= 0, weights outside [0, 1], a student
    that is not smaller than its teacher)."""


def check_settings(temperature: float, alpha: float) -> tuple[float, float]:
    """``(temperature, alpha)`` as floats, or a clear error: T > 0, alpha in [0, 1]."""
    try:
        t, a = float(temperature), float(alpha)
    except (TypeError, ValueError):
        raise DistillationError(f"temperature and alpha must be numbers, got {temperature!r}, {alpha!r}") from None
    if not t > 0:
        raise DistillationError(f"temperature must be > 0, got {temperature!r}")
    if not 0.0 <= a <= 1.0:
        raise DistillationError(f"alpha (the soft-target weight) must be in [0, 1], got {alpha!r}")
    return t, a


def kd_loss(student_logits, teacher_logits, labels, temperature: float = 4.0, alpha: float = 0.9,
            label_smoothing: float = 0.0):
    """Hinton's distillation loss (see the module docstring), mean over the batch."""
    import torch.nn.functional as F

    t, a = check_settings(temperature, alpha)
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
    hard = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    return a * soft + (1 - a) * hard


def kd_loss_reference(student_logits, teacher_logits, labels, temperature: float, alpha: float):
    """The same loss written out element by element with numpy, for the notebook's check."""
    import numpy as np

    zs = np.asarray(student_logits, dtype=np.float64)
    zt = np.asarray(teacher_logits, dtype=np.float64)
    y = np.asarray(labels)

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    ls, lt = log_softmax(zs / temperature), log_softmax(zt / temperature)
    kl = (np.exp(lt) * (lt - ls)).sum(axis=1).mean() * temperature ** 2
    ce = -log_softmax(zs)[np.arange(len(y)), y].mean()
    return alpha * kl + (1 - alpha) * ce


def check_student(student, teacher, max_fraction: float = 0.5) -> float:
    """The student's parameter count as a fraction of the teacher's; an error when it is
    above ``max_fraction`` (a "student" at least as large as its teacher compresses nothing)."""
    s, t = size.count_params(student), size.count_params(teacher)
    fraction = s / t
    if s >= t:
        raise DistillationError(f"the student ({s:,} parameters) is not smaller than its teacher ({t:,})")
    if fraction > max_fraction:
        raise DistillationError(f"the student has {fraction:.2f} of the teacher's parameters "
                                f"({s:,} / {t:,}); at most {max_fraction} is asked for")
    return fraction


def build_student_resnet(num_classes: int = 10, width: int = 32) -> "torch.nn.Module":
    """A ResNet-18-shaped student with ``width`` channels in its first stage instead of 64
    (every stage scaled alike; CIFAR stem like the teacher's): width 32 has about a quarter
    of the parameters at the same depth. It is a plain torchvision ``ResNet`` whose stages
    are rebuilt narrower, so it saves and loads like the teacher."""
    import torch.nn as nn
    import torchvision
    from torchvision.models.resnet import BasicBlock

    if width < 1:
        raise DistillationError(f"width must be a positive channel count, got {width!r}")
    model = torchvision.models.resnet18(num_classes=num_classes)
    model.inplanes = width
    model.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
    model.bn1 = nn.BatchNorm2d(width)
    model.maxpool = nn.Identity()
    model.layer1 = model._make_layer(BasicBlock, width, 2)
    model.layer2 = model._make_layer(BasicBlock, 2 * width, 2, stride=2)
    model.layer3 = model._make_layer(BasicBlock, 4 * width, 2, stride=2)
    model.layer4 = model._make_layer(BasicBlock, 8 * width, 2, stride=2)
    model.fc = nn.Linear(8 * width, num_classes)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


def train_student_resnet(data, *, width: int, epochs: int, lr: float, batch: int = 64, seed: int = 0,
                         loss_fn=None) -> dict:
    """Train a fresh :func:`build_student_resnet` from seed ``seed`` with
    :func:`common.train.fit_classifier` (``loss_fn``: e.g. :meth:`CachedTeacher.loss_fn`;
    None: cross-entropy), so every student of a comparison starts and trains alike. Returns the
    model, its per-epoch history, its final validation accuracy and its test-split metrics."""
    from common import env, train, workloads

    env.seed_everything(seed)
    model = build_student_resnet(len(data.classes), width)
    hist = train.fit_classifier(model, data, epochs=epochs, lr=lr, batch=batch, seed=seed,
                                loss_fn=loss_fn, progress=False)
    return {"model": model, "history": hist, "val": hist[-1]["val_accuracy"],
            "test": workloads.evaluate_classifier(model, data)}


class CachedTeacher:
    """The teacher's logits for :func:`common.train.fit_classifier`'s ``loss_fn`` hook,
    computed once per training step and reused by every later run that replays the same
    batches (same data, seed, epochs and batch size, so the same random shifts): a sweep over
    temperature and alpha pays for the teacher's forward passes once. Each step's batch is
    fingerprinted, and a run whose batches differ fails instead of learning from stale logits."""

    def __init__(self, teacher):
        import copy

        import torch

        # a channels-last copy: the layout fit_classifier feeds, which oneDNN runs ~1.6x faster here
        self.teacher = copy.deepcopy(teacher).eval().to(memory_format=torch.channels_last)
        self._logits: list = []
        self._keys: list[tuple] = []

    @staticmethod
    def _key(x) -> tuple:
        x = x.double()
        return tuple(x.shape), float(x.sum()), float(x.abs().sum()), float(x.flatten()[::97].sum())

    def logits(self, step: int, x):
        """The teacher's logits for training step ``step`` whose batch is ``x``."""
        import torch

        key = self._key(x)
        if step < len(self._logits):
            if key != self._keys[step]:
                raise DistillationError(f"step {step} has a different batch than the cached run: every run "
                                        "sharing a CachedTeacher needs the same data, seed, epochs and batch size")
            return self._logits[step]
        if step != len(self._logits):
            raise DistillationError(f"steps must come in order: expected step {len(self._logits)}, got {step}")
        with torch.no_grad():
            z = self.teacher.to(x.device)(x).float()   # the teacher follows the batch's device
        self._logits.append(z)
        self._keys.append(key)
        return z

    def loss_fn(self, temperature: float, alpha: float):
        """A ``loss_fn(logits, x, y)`` for ``fit_classifier``: :func:`kd_loss` against the teacher."""
        import itertools

        t, a = check_settings(temperature, alpha)
        steps = itertools.count()
        return lambda logits, x, y: kd_loss(logits, self.logits(next(steps), x), y, t, a)


# --------------------------------------------------------------------------- detector

#: Teachers of running distillation trainers, by key. A student model names its teacher by
#: key instead of holding it, so the teacher never enters the student's parameters, its EMA
#: copy or the checkpoints ultralytics writes.
_TEACHERS: dict[str, tuple["torch.nn.Module", float, float, float]] = {}


def detection_kd_terms(student: dict, teacher: dict, temperature: float = 2.0):
    """Logit imitation between two YOLOv8 heads with the same strides, ``reg_max`` and classes
    (their raw training outputs: ``boxes`` [B, 4 * reg_max, A], ``scores`` [B, nc, A]).

    - class term: per anchor and class, the KL divergence between the teacher's and the
      student's temperature-softened Bernoulli (sigmoid) scores, summed over classes and
      averaged over all anchors (background anchors teach what *not* to detect);
    - box term: per anchor, the KL divergence between the softened distance distributions
      (DFL bins) of the four box sides, averaged over anchors weighted by the teacher's
      confidence (its highest class probability), so boxes are imitated where objects are.

    Both are multiplied by T^2 and are 0 when the student reproduces the teacher."""
    import torch
    import torch.nn.functional as F

    t = check_settings(temperature, 0.0)[0]
    s_cls, t_cls = student["scores"], teacher["scores"].detach()
    s_box, t_box = student["boxes"], teacher["boxes"].detach()
    if s_cls.shape != t_cls.shape or s_box.shape != t_box.shape:
        raise DistillationError(f"student and teacher heads do not line up: scores {tuple(s_cls.shape)} vs "
                                f"{tuple(t_cls.shape)}, boxes {tuple(s_box.shape)} vs {tuple(t_box.shape)}")
    p_t = torch.sigmoid(t_cls / t)
    # BCE(student, p_t) - BCE(teacher, p_t) = KL(Bernoulli(p_t) || Bernoulli(p_s))
    kl_cls = (F.binary_cross_entropy_with_logits(s_cls / t, p_t, reduction="none")
              - F.binary_cross_entropy_with_logits(t_cls / t, p_t, reduction="none"))
    cls_term = kl_cls.sum(1).mean() * t * t
    b, _, a = s_box.shape
    ls = F.log_softmax(s_box.view(b, 4, -1, a) / t, dim=2)
    lt = F.log_softmax(t_box.view(b, 4, -1, a) / t, dim=2)
    kl_box = (lt.exp() * (lt - ls)).sum(2).sum(1)  # [B, A]
    w = torch.sigmoid(t_cls).amax(1)               # [B, A] teacher confidence
    box_term = (kl_box * w).sum() / w.sum().clamp_min(1e-9) * t * t
    return cls_term, box_term


def _detection_model_class():
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel


def __getattr__(name: str):
    # DistilledDetectionModel subclasses ultralytics' DetectionModel, built on first use so
    # that importing common.distill does not import ultralytics
    if name == "DistilledDetectionModel":
        cls = _build_distilled_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def _build_distilled_class():
    import torch

    DetectionModel = _detection_model_class()

    class DistilledDetectionModel(DetectionModel):
        """A YOLOv8 student whose training loss is ultralytics' detection loss plus
        ``batch * (weight * class term + box_weight * box term)`` of :func:`detection_kd_terms`
        against the teacher registered under ``teacher_key`` (ultralytics' loss is also a sum
        over the batch). The KD part is logged as ``kd``."""

        teacher_key: str = ""

        def loss(self, batch, preds=None):
            if preds is None:
                preds = self.forward(batch["img"])
            loss, items = super().loss(batch, preds)
            if not self.teacher_key:  # no teacher: a plain detection model
                return loss, items
            teacher, weight, box_weight, temperature = _TEACHERS[self.teacher_key]
            with torch.no_grad():    # the teacher follows the batch to the trainer's device
                _, t_preds = teacher.to(batch["img"].device)(batch["img"].contiguous(memory_format=torch.channels_last))
            s_preds = preds[1] if isinstance(preds, tuple) else preds  # (y, raw) when validating
            cls_term, box_term = detection_kd_terms(s_preds, t_preds, temperature)
            kd = batch["img"].shape[0] * (weight * cls_term + box_weight * box_term)
            return loss.sum() + kd, {**items, "kd": kd.detach()}

    DistilledDetectionModel.__module__ = __name__
    DistilledDetectionModel.__qualname__ = "DistilledDetectionModel"
    return DistilledDetectionModel


def distillation_trainer(teacher, *, weight: float = 2.0, box_weight: float = 0.2,
                         temperature: float = 2.0):
    """An ultralytics ``DetectionTrainer`` subclass whose model is a
    :class:`DistilledDetectionModel` student (built from the run's yaml) imitating ``teacher``
    with class-score weight ``weight`` and box-distribution weight ``box_weight``.
    Pass it as ``YOLO(student_yaml).train(trainer=...)`` (or ``fit_detector(trainer=...)``)."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    check_settings(temperature, 0.0)
    for name, value in (("weight", weight), ("box_weight", box_weight)):
        if not (isinstance(value, (int, float)) and value >= 0):
            raise DistillationError(f"the distillation {name} must be a number >= 0, got {value!r}")
    import copy

    import torch

    # the teacher only runs forward: fold its BatchNorms into the convolutions and use the
    # channels-last layout (same outputs to ~1e-5, about 1.3x faster on this CPU)
    frozen = copy.deepcopy(teacher).float().eval().fuse(verbose=False).to(memory_format=torch.channels_last)
    key = f"teacher-{id(frozen):x}"
    _TEACHERS[key] = (frozen, float(weight), float(box_weight), float(temperature))
    student_cls = __getattr__("DistilledDetectionModel")

    class DistillationTrainer(DetectionTrainer):
        def get_model(self, cfg=None, weights=None, verbose=True):
            model = student_cls(cfg, nc=self.data["nc"], ch=self.data["channels"], verbose=False)
            model.teacher_key = key
            model = self.set_model_names_for_load(model)
            if weights:
                model.load(weights)
            return model

    return DistillationTrainer


def plain_student(model):
    """The trained student as a plain ultralytics ``DetectionModel`` (no teacher link), so it
    saves, loads, validates and exports like any YOLO model. In place; returns it."""
    model.__class__ = _detection_model_class()
    model.__dict__.pop("teacher_key", None)
    model.criterion = None
    return model


def yolo_student(yaml_path, nc: int):
    """An untrained ultralytics ``DetectionModel`` built from a :func:`student_yaml` file with
    ``nc`` classes (the shape the trainer will build), for size checks and head comparisons."""
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(str(yaml_path), nc=nc, verbose=False)


def student_yaml(out_path, *, width_multiple: float = 0.125, depth_multiple: float = 0.33,
                 base: str = "yolov8.yaml") -> "Path":
    """Write a custom YOLOv8 model yaml: ultralytics' ``base`` architecture with its scale
    table replaced by fixed ``width_multiple`` / ``depth_multiple`` (yolov8n is 0.25 / 0.33).
    Width 0.125 halves every convolution's channels: about a quarter of yolov8n's weights
    in the backbone and neck (the head keeps a floor of channels)."""
    from pathlib import Path

    import yaml
    from ultralytics.nn.tasks import yaml_model_load

    if not (0 < width_multiple <= 1 and 0 < depth_multiple <= 1):
        raise DistillationError(f"width and depth multiples must be in (0, 1], got {width_multiple}, {depth_multiple}")
    cfg = dict(yaml_model_load(base))
    for k in ("scales", "scale", "yaml_file", "ch"):
        cfg.pop(k, None)
    cfg.update(depth_multiple=depth_multiple, width_multiple=width_multiple)
    def rows(layers):  # one layer per line, [from, repeats, module, args], as ultralytics writes them
        return [f"  - {yaml.safe_dump(r, default_flow_style=True, width=1000).strip()}" for r in layers]

    text = "\n".join([f"# ultralytics {base} with fixed multiples (yolov8n: depth 0.33, width 0.25)",
                      f"nc: {cfg['nc']}", f"depth_multiple: {depth_multiple}", f"width_multiple: {width_multiple}",
                      "backbone:", *rows(cfg["backbone"]), "head:", *rows(cfg["head"])]) + "\n"
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out
