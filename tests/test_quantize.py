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
    """hw2's cross-check: ONNX Runtime's static QDQ per-channel int8 weights vs quantize_tensor."""
    from common import backends

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3)).eval()
    x = torch.randn(16, 3, 12, 12)
    fp32 = tmp_path / "m.onnx"
    torch.onnx.export(model, (x[:1],), str(fp32), input_names=["images"], opset_version=17, dynamo=False)
    q8 = quantize.onnx_int8(fp32, tmp_path / "m-int8.onnx", x.numpy())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-int8.onnx", "m.onnx"]   # no temporaries left
    codes, scale, zero = quantize.onnx_quantized_weight(q8, "0.weight")
    ours = quantize.quantize_tensor(model[0].weight, 8, symmetric=True, per_channel=True)
    assert codes.dtype == np.int8 and not zero.any()
    np.testing.assert_allclose(scale, ours.scale, rtol=1e-5)
    assert np.abs(codes.astype(np.int32) - ours.q).max() <= 1
    ref = model(x[:1]).detach().numpy()
    got = backends.load(q8, threads=1)(x[:1].numpy())
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()      # int8 activations: close, not equal
    with pytest.raises(quantize.QuantizationError, match="non-empty NCHW batch"):
        quantize.onnx_int8(fp32, tmp_path / "never.onnx", x.numpy()[:0])
