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


def _head(g, b=2, nc=3, reg_max=16, anchors=21, scale=1.0):
    return {"boxes": torch.randn(b, 4 * reg_max, anchors, generator=g) * scale,
            "scores": torch.randn(b, nc, anchors, generator=g) * scale}


def test_detection_kd_terms_are_zero_for_the_teacher_itself_and_grow_with_the_gap():
    g = torch.Generator().manual_seed(0)
    teacher = _head(g)
    cls0, box0 = distill.detection_kd_terms(teacher, teacher, 2.0)
    assert float(cls0) == pytest.approx(0.0, abs=1e-6) and float(box0) == pytest.approx(0.0, abs=1e-6)
    near = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in teacher.items()}
    far = {k: v + 2.0 * torch.randn(v.shape, generator=g) for k, v in teacher.items()}
    (cn, bn), (cf, bf) = (distill.detection_kd_terms(s, teacher, 2.0) for s in (near, far))
    assert 0 < float(cn) < float(cf) and 0 < float(bn) < float(bf)


def test_detection_kd_class_term_is_the_bernoulli_kl():
    g = torch.Generator().manual_seed(1)
    s, t = _head(g, b=1, nc=2, anchors=3), _head(g, b=1, nc=2, anchors=3)
    temp = 3.0
    ps, pt = torch.sigmoid(s["scores"] / temp).double(), torch.sigmoid(t["scores"] / temp).double()
    kl = pt * torch.log(pt / ps) + (1 - pt) * torch.log((1 - pt) / (1 - ps))
    expected = float(kl.sum(1).mean()) * temp ** 2
    assert float(distill.detection_kd_terms(s, t, temp)[0]) == pytest.approx(expected, rel=1e-5)


def test_detection_kd_refuses_heads_that_do_not_line_up_and_bad_settings():
    g = torch.Generator().manual_seed(2)
    with pytest.raises(distill.DistillationError, match="do not line up"):
        distill.detection_kd_terms(_head(g, anchors=21), _head(g, anchors=84), 2.0)
    with pytest.raises(distill.DistillationError, match="> 0"):
        distill.detection_kd_terms(_head(g), _head(g), 0.0)
    teacher = torch.nn.Linear(2, 2)
    with pytest.raises(distill.DistillationError, match="box_weight"):
        distill.distillation_trainer(teacher, box_weight=-1)


def test_student_yaml_builds_a_half_size_yolov8_that_saves_without_its_teacher(tmp_path):
    workloads.ultralytics_setup()
    from ultralytics.nn.tasks import DetectionModel

    teacher = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    path = distill.student_yaml(tmp_path / "student.yaml", width_multiple=0.125)
    trainer_cls = distill.distillation_trainer(teacher)
    student = distill.DistilledDetectionModel(str(path), nc=3, verbose=False)
    student.teacher_key = next(iter(distill._TEACHERS))
    assert distill.check_student(student, teacher) <= 0.5
    x = torch.zeros(1, 3, 64, 64)
    assert [o.shape for o in student.eval()(x)[1]["scores"]] == [o.shape for o in teacher.eval()(x)[1]["scores"]]
    torch.save(distill.plain_student(student), tmp_path / "s.pt")
    reloaded = torch.load(tmp_path / "s.pt", weights_only=False)
    assert type(reloaded) is DetectionModel and not hasattr(reloaded, "teacher_key")
    assert size.count_params(reloaded) == size.count_params(student)
    assert trainer_cls.__name__ == "DistillationTrainer"
    with pytest.raises(distill.DistillationError, match=r"\(0, 1\]"):
        distill.student_yaml(tmp_path / "bad.yaml", width_multiple=0)


def test_cached_teacher_runs_the_teacher_once_per_step_and_refuses_other_batches():
    calls = []

    class Teacher(torch.nn.Module):
        def forward(self, x):
            calls.append(1)
            return x.flatten(1)[:, :4] * 2

    cache = distill.CachedTeacher(Teacher())
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 3, 4, 4, generator=g) for _ in range(3)]
    y = torch.zeros(8, dtype=torch.long)
    losses = []
    for _ in range(2):  # two runs over the same batches: the teacher runs 3 times, not 6
        fn = cache.loss_fn(2.0, 0.5)
        losses.append([float(fn(torch.zeros(8, 4), x, y)) for x in batches])
    assert len(calls) == 3 and losses[0] == losses[1]
    expected = distill.kd_loss(torch.zeros(8, 4), batches[1].flatten(1)[:, :4] * 2, y, 2.0, 0.5)
    assert losses[0][1] == pytest.approx(float(expected))
    fn = cache.loss_fn(2.0, 0.5)
    with pytest.raises(distill.DistillationError, match="different batch"):
        fn(torch.zeros(8, 4), batches[0] + 1, y)


def test_students_trained_alike_are_identical_and_the_loss_is_what_differs():
    from common import data

    ds = data.subset(data.load_classification("digits", 32, 0), 128, "train", 0)
    runs = [distill.train_student_resnet(ds, width=16, epochs=1, lr=0.05, seed=0) for _ in range(2)]
    for a, b in zip(runs[0]["model"].state_dict().values(), runs[1]["model"].state_dict().values()):
        assert torch.equal(a, b)
    kd = distill.train_student_resnet(ds, width=16, epochs=1, lr=0.05, seed=0,
                                      loss_fn=distill.CachedTeacher(runs[0]["model"]).loss_fn(2.0, 0.5))
    assert not torch.equal(kd["model"].fc.weight, runs[0]["model"].fc.weight)
    assert set(runs[0]) == {"model", "history", "val", "test"} and 0 <= runs[0]["test"]["accuracy"] <= 1


def test_sweep_chooses_on_validation_and_seed_pairs_reuse_what_was_trained():
    from common import data, distill_runs

    ds = data.subset(data.load_classification("digits", 32, 0), 128, "train", 0)
    recipe = {"width": 16, "epochs": 1, "lr": 0.05, "batch": 64}
    teacher = distill.train_student_resnet(ds, seed=9, **recipe)["model"]
    runs, best, (t, a) = distill_runs.classifier_sweep(teacher, ds, [(2.0, 0.5), (4.0, 0.9)], seed=0, **recipe)
    assert list(runs) == ["scratch", "kd T=2 a=0.5", "kd T=4 a=0.9"]
    assert runs[best]["val"] == max(r["val"] for k, r in runs.items() if k != "scratch")
    assert best == f"kd T={t:g} a={a:g}"
    pairs = distill_runs.kd_vs_scratch(teacher, ds, t, a, [0, 1], reuse={0: (runs["scratch"], runs[best])}, **recipe)
    assert pairs["scratch"][0] is runs["scratch"] and pairs["kd"][0] is runs[best]
    # seed 1 is trained here, alike: its KD student differs from its scratch one only by the loss
    assert not torch.equal(pairs["kd"][1]["model"].fc.weight, pairs["scratch"][1]["model"].fc.weight)
    assert distill_runs.student_accuracies(pairs, "kd") == [runs[best]["test"]["accuracy"], pairs["kd"][1]["test"]["accuracy"]]
    with pytest.raises(ValueError, match="choose one of"):
        distill_runs.student_accuracies(pairs, "teacher")
