"""From-scratch linear quantization (hw2) against PyTorch's quantized tensors."""

import numpy as np
import pytest
import torch

from common import quantize

# the reference API is deprecated in favour of torchao, still the plainest statement of the arithmetic
pytestmark = pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")


@pytest.fixture
def weight():
    torch.manual_seed(0)
    return torch.nn.Conv2d(8, 16, 3).weight.detach() * torch.linspace(0.1, 3, 16)[:, None, None, None]


def test_per_channel_symmetric_int8_matches_torch_exactly(weight):
    qt = quantize.quantize_tensor(weight, 8, symmetric=True, per_channel=True, axis=0)
    obs = torch.ao.quantization.PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, quant_min=-127,
                                                         quant_max=127, qscheme=torch.per_channel_symmetric)
    obs(weight)
    scale, zero = obs.calculate_qparams()
    np.testing.assert_allclose(qt.scale, scale.numpy(), rtol=1e-6)
    ref = torch.quantize_per_channel(weight, torch.as_tensor(qt.scale, dtype=torch.float64), zero, 0, torch.qint8)
    assert np.array_equal(qt.q, ref.int_repr().numpy())
    np.testing.assert_allclose(qt.dequantize(), ref.dequantize().numpy(), rtol=0, atol=1e-7)


def test_per_tensor_asymmetric_uint8_matches_torch(weight):
    qt = quantize.quantize_tensor(weight, 8, symmetric=False)
    assert qt.q.min() >= 0 and qt.q.max() <= 255 and qt.scale.shape == ()
    ref = torch.quantize_per_tensor(weight, float(qt.scale), int(qt.zero_point), torch.quint8)
    assert np.abs(qt.q - ref.int_repr().numpy().astype(np.int32)).max() <= 1   # float32 vs float64 rounding at .5
    err = quantize.quantization_error(weight, qt)
    assert err["max_steps"] <= 0.5 + 1e-6 and err["sqnr_db"] > 30


def test_min_max_calibration_never_clips_by_more_than_half_a_step():
    # many random layers: the zero point follows the stored (float32) scale, so the range's ends
    # stay within half a step; hw2 asserts this on the trained weights of whichever CPU runs it
    rng = np.random.default_rng(0)
    for _ in range(40):   # 64x64x3x3: the size where float32 rounding of values pushed the old code past 0.5
        w = (rng.standard_normal((64, 64, 3, 3)) * rng.uniform(1e-3, 0.2) + rng.uniform(-0.05, 0.05)).astype(np.float32)
        for bits in (4, 8):
            for sym in (True, False):
                for pc in (False, True):
                    e = quantize.quantization_error(w, quantize.quantize_tensor(w, bits, sym, pc))
                    assert e["max_steps"] <= 0.5 + 1e-9, (bits, sym, pc, e["max_steps"] - 0.5)


def test_finer_granularity_and_more_bits_lower_the_error(weight):
    e = {(b, pc): quantize.quantization_error(weight, quantize.quantize_tensor(weight, b, True, pc))["mse"]
         for b in (4, 8) for pc in (False, True)}
    assert e[8, True] < e[8, False] < e[4, False] and e[4, True] < e[4, False]


def test_zero_is_exact_and_bad_settings_are_refused(weight):
    for sym in (True, False):
        qt = quantize.quantize_tensor(torch.zeros(3, 4), 8, sym, per_channel=True)
        assert not qt.dequantize().any()
    with pytest.raises(quantize.QuantizationError, match="bits must be an integer in \\[2, 16\\]"):
        quantize.quantize_tensor(weight, 1)
    with pytest.raises(quantize.QuantizationError, match="axis 4 does not exist"):
        quantize.quantize_tensor(weight, 8, per_channel=True, axis=4)


def test_onnx_runtime_per_channel_weights_agree_with_ours_within_one_step(tmp_path):
    """hw2's cross-check: ONNX Runtime's static QDQ per-channel int8 weights vs quantize_tensor,
    and its integer kernels vs the same model simulated in float, on whatever CPU runs this."""
    from common import backends

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3)).eval()
    x = torch.randn(16, 3, 12, 12)
    fp32 = tmp_path / "m.onnx"
    torch.onnx.export(model, (x[:1],), str(fp32), input_names=["images"], opset_version=17, dynamo=False)
    q8 = quantize.onnx_int8(fp32, tmp_path / "m-int8.onnx", x.numpy())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-int8.onnx", "m.onnx"]   # no temporaries left
    codes, scale, zero = quantize.onnx_quantized_weight(q8, "0.weight")
    ours = quantize.quantize_tensor(model[0].weight, 8, symmetric=True, per_channel=True, qmax=quantize.REDUCED_QMAX)
    assert codes.dtype == np.int8 and not zero.any() and np.abs(codes).max() == quantize.REDUCED_QMAX
    np.testing.assert_allclose(scale, ours.scale, rtol=1e-5)
    assert np.abs(codes.astype(np.int32) - ours.q).max() <= 1
    ref = model(x[:1]).detach().numpy()
    got = backends.load(q8, threads=1)(x[:1].numpy())
    # graph optimizations off: every DequantizeLinear runs and the convolutions stay float, an exact
    # simulation of the int8 model with no integer kernel (and so no saturation) involved
    simulated = backends.load(q8, threads=1, optimize=False)(x[:1].numpy())
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()      # int8 activations: close, not equal
    # the integer kernels compute what the quantized model means, on this CPU too: within a few
    # output steps of the float simulation (a saturating kernel is off by ~0.1 here, 10x more)
    assert np.abs(got - simulated).max() < 0.01 * np.abs(ref).max()
    # the same check as hw2's, in steps of the quantized output (the float model has none)
    step = quantize.output_step(q8)
    assert quantize.output_step(fp32) is None and step is not None and step > 0
    e = quantize.kernel_error(q8, x[:4].numpy(), threads=1)
    assert e["steps"] <= 3 and e["rel"] < 0.01
    with pytest.raises(quantize.QuantizationError, match="non-empty NCHW batch"):
        quantize.onnx_int8(fp32, tmp_path / "never.onnx", x.numpy()[:0])
    with pytest.raises(quantize.QuantizationError, match=r"qmax narrows a symmetric range: an integer in \[1, 127\]"):
        quantize.quantize_tensor(model[0].weight, 8, symmetric=False, qmax=64)


def _small_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 5)).eval()


def test_fake_quantize_is_quantize_tensor_with_a_straight_through_gradient():
    from common import cluster

    model = _small_cnn()
    plain = [m.weight.detach().clone() for m in model if hasattr(m, "weight")]
    quantize.fake_quantize(model, 4)
    for m, w in zip([m for m in model if hasattr(m, "weight")], plain):
        ref = quantize.quantize_tensor(w, 4, symmetric=True, per_channel=True).dequantize()
        np.testing.assert_allclose(m.weight.detach().numpy(), ref, rtol=0, atol=1e-6)
    x = torch.randn(2, 3, 12, 12)
    model(x).square().sum().backward()
    # straight-through: the float weight gets exactly the gradient of the quantized weight it feeds
    twin = _small_cnn()
    for t, m in zip([t for t in twin if hasattr(t, "weight")], [m for m in model if hasattr(m, "weight")]):
        t.weight = torch.nn.Parameter(m.weight.detach().clone())
    twin(x).square().sum().backward()
    assert torch.allclose(model[0].parametrizations.weight.original.grad, twin[0].weight.grad, atol=1e-5)
    cluster.untie(model)
    assert not hasattr(model[0], "parametrizations")
    assert len(torch.unique(model[2].weight[0])) <= 15           # 4 bits, symmetric: at most 15 levels
    with pytest.raises(quantize.QuantizationError, match="unknown layers"):
        quantize.fake_quantize(_small_cnn(), 4, ["conv9"])


def test_layer_sensitivity_gives_one_sqnr_per_layer_and_more_bits_help():
    model = _small_cnn()
    x = torch.randn(16, 3, 12, 12)
    s4 = quantize.layer_sensitivity(model, x, 4, progress=False)
    s8 = quantize.layer_sensitivity(model, x, 8, progress=False)
    assert list(s4) == ["0", "2", "4"]
    assert all(s8[n] > s4[n] + 15 for n in s4)                   # ~6 dB per bit
    assert quantize.output_sqnr([1.0, 2.0], [1.0, 2.0]) == float("inf")
    assert abs(quantize.output_sqnr([1.0, -1.0], [1.1, -1.1]) - 20.0) < 1e-9


def test_method_and_calibration_checks_fail_before_work():
    assert quantize.check_methods("int8-onnx") == ["int8-onnx"]
    with pytest.raises(quantize.QuantizationError, match="valid methods: fp16-openvino"):
        quantize.check_methods(["int8-onnx", "int4"])
    assert quantize.check_calibration(300, 400) == 300
    with pytest.raises(quantize.QuantizationError, match="larger than the training split"):
        quantize.check_calibration(401, 400)
    with pytest.raises(quantize.QuantizationError, match="empty"):
        quantize.check_calibration(0, 400)
    with pytest.raises(quantize.QuantizationError, match="integer"):
        quantize.check_calibration(2.5, 400)


def test_onnx_fp16_and_dynamic_stay_close_and_keep_metadata(tmp_path):
    import onnx

    from common import backends

    model = _small_cnn()
    x = torch.randn(4, 3, 12, 12)
    fp32 = tmp_path / "m.onnx"
    torch.onnx.export(model, (x[:1],), str(fp32), input_names=["images"], opset_version=17, dynamo=False,
                      dynamic_axes={"images": {0: "batch"}})
    m = onnx.load(str(fp32))
    m.metadata_props.add(key="names", value="{0: 'a'}")
    onnx.save(m, str(fp32))
    ref = model(x).detach().numpy()
    scale = np.abs(ref).max()
    f16 = quantize.onnx_fp16(fp32, tmp_path / "m16.onnx")
    assert abs(backends.load(f16, threads=1)(x.numpy()) - ref).max() < 1e-2 * scale
    assert onnx.load(str(f16)).graph.initializer[0].data_type == onnx.TensorProto.FLOAT16
    dyn = quantize.onnx_dynamic(fp32, tmp_path / "mdyn.onnx")
    assert abs(backends.load(dyn, threads=1)(x.numpy()) - ref).max() < 0.05 * scale
    q8 = quantize.onnx_int8(fp32, tmp_path / "m8.onnx", x.numpy())
    for path in (dyn, q8):                                           # ultralytics reads names from here
        assert {p.key: p.value for p in onnx.load(str(path)).metadata_props} == {"names": "{0: 'a'}"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m16.onnx", "m8.onnx", "mdyn.onnx"]


def test_onnx_weight_helpers_and_detector_postprocess_selection(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="/model.22/cv2.0/cv2.0.2/Conv"),
             helper.make_node("Sigmoid", ["c"], ["s"], name="/model.22/cv3.0/act/Sigmoid"),
             helper.make_node("Softmax", ["s"], ["d"], name="/model.22/dfl/Softmax"),
             helper.make_node("Concat", ["d", "s"], ["y0"], name="/model.22/Concat_3", axis=1),
             helper.make_node("Identity", ["y0"], ["y"], name="/model.23/dfl/conv/Conv")]   # fixed, elsewhere
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    path = tmp_path / "det.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert quantize.yolo_postprocess_nodes(path) == ["/model.22/dfl/Softmax", "/model.22/Concat_3",
                                                     "/model.23/dfl/conv/Conv"]
    assert quantize.conv_weight_names(path) == ["w"]
    np.testing.assert_array_equal(quantize.onnx_float_weight(path, "w"), w)
    with pytest.raises(quantize.QuantizationError, match="no node under"):
        quantize.yolo_postprocess_nodes(path, head="/model.9/")


def test_tflite_fp16_dynamic_and_int8(tmp_path):
    import litert_torch

    from common import backends

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3)).eval()
    x = torch.randn(1, 3, 16, 16)
    fp32 = tmp_path / "m.tflite"
    litert_torch.convert(model, (x,)).export(str(fp32))
    ref = model(x).detach().numpy()
    scale = np.abs(ref).max()
    with pytest.raises(quantize.QuantizationError, match="choose one of fp16, int8, dynamic"):
        quantize.tflite_quantize(fp32, tmp_path / "never.tflite", "int4")
    with pytest.raises(quantize.QuantizationError, match="non-empty calibration"):
        quantize.tflite_quantize(fp32, tmp_path / "never" / "m.tflite", "int8", np.zeros((0, 3, 16, 16), np.float32))
    assert not (tmp_path / "never").exists()                          # refused before any work
    calib = torch.randn(16, 3, 16, 16).numpy()
    for mode, tol in (("fp16", 1e-2), ("dynamic", 0.05), ("int8", 0.08)):
        out = quantize.tflite_quantize(fp32, tmp_path / f"m-{mode}.tflite", mode, calib if mode == "int8" else None)
        got = backends.load(out, threads=1)(x.numpy())
        assert got.shape == ref.shape and abs(got - ref).max() < tol * scale, mode
        assert out.stat().st_size < fp32.stat().st_size * (0.6 if mode == "fp16" else 0.4)
    assert not list(tmp_path.glob("*.tmp.*")) and not (tmp_path / "never.tflite").exists()


def test_qat_and_its_controls_on_the_same_budget():
    """quantize_runs: QAT's curve starts at the rounded model and has a point per round, its models
    are on the bit grid; the controls give rounding + BN (no steps) and, per seed, the same number of
    float fine-tune steps followed by rounding."""
    import torch

    from common import quantize_runs, workloads

    bl = workloads.baseline("resnet18")
    ft = {"images": 64}
    start = workloads.evaluate(bl, quantize_runs.rounded(bl.model, 4))["accuracy"]
    curves, models = quantize_runs.qat(bl, 4, rounds=2, lr=1e-4, seeds=[0], metric="accuracy", ft=ft)
    assert sorted(curves) == [0] and curves[0][0] == (0, start)
    assert [st for st, _ in curves[0]] == [0, 1, 2]            # 64 images at batch 64: one step a round
    w = models[0].conv1.weight.detach()
    grid = quantize.quantize_tensor(w, 4, symmetric=True, per_channel=True).dequantize()
    assert torch.allclose(w, torch.as_tensor(grid), atol=1e-6)
    x = torch.as_tensor(workloads.sample_inputs(bl, 32, "train", seed=0))
    table = quantize_runs.qat_controls(bl, 4, rounds=2, lr=1e-4, seeds=[3], metric="accuracy", ft=ft, x_bn=x)
    assert list(table.control) == [quantize_runs.PTQ_BN, quantize_runs.FLOAT_FT] and list(table.seed)[1] == 3
    assert list(table.steps) == [0, 2] and table.accuracy.between(0, 1).all()
    assert not any(p.is_cuda for p in bl.model.parameters())
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        quantize_runs.qat(bl, 4, rounds=0, lr=1e-4, seeds=[0], metric="accuracy", ft=ft)
