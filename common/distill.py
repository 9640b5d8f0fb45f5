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
