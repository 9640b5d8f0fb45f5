"""Distillation: the KD loss against a numpy reference and its limits, student size checks."""

import pytest
import torch

from common import distill, size, workloads


@pytest.mark.parametrize("t, alpha", [(1.0, 0.5), (4.0, 0.9), (8.0, 0.0), (2.0, 1.0)])
def test_kd_loss_matches_the_written_out_reference(t, alpha):
    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(16, 10, generator=g), torch.randn(16, 10, generator=g) * 3
    y = torch.randint(0, 10, (16,), generator=g)
    ours = float(distill.kd_loss(zs, zt, y, t, alpha))
    assert ours == pytest.approx(distill.kd_loss_reference(zs.numpy(), zt.numpy(), y.numpy(), t, alpha), rel=1e-5)


def test_kd_loss_limits():
    z = torch.randn(8, 5)
    y = z.argmax(1)
    # a student equal to its teacher has no soft loss; alpha 0 is plain cross-entropy
    assert float(distill.kd_loss(z, z, y, 3.0, 1.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill.kd_loss(z, z * 2, y, 3.0, 0.0)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(z, y)))


@pytest.mark.parametrize("t, alpha, message", [(0, 0.5, "> 0"), (-1, 0.5, "> 0"), (2, 1.5, r"\[0, 1\]"),
                                               (2, -0.1, r"\[0, 1\]"), ("hot", 0.5, "numbers")])
def test_bad_settings_are_refused(t, alpha, message):
    with pytest.raises(distill.DistillationError, match=message):
        distill.kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), t, alpha)


def test_student_is_a_quarter_of_the_teacher_and_saves(tmp_path):
    teacher = workloads.build_resnet18(10)
    student = distill.build_student_resnet(10, width=32)
    assert 0.2 < distill.check_student(student, teacher) < 0.3
    assert student(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    torch.save(student, tmp_path / "s.pt")
    assert size.count_params(torch.load(tmp_path / "s.pt", weights_only=False)) == size.count_params(student)
    with pytest.raises(distill.DistillationError, match="not smaller"):
        distill.check_student(teacher, student)
    with pytest.raises(distill.DistillationError, match="at most 0.5"):
        distill.check_student(distill.build_student_resnet(10, width=48), teacher)
