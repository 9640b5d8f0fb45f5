import gzip

import pytest
import torch

from common import size


def test_bytes_and_gzip_on_known_bytes(tmp_path):
    f = tmp_path / "w.bin"
    payload = bytes(range(256)) * 40 + b"\0" * 5000
    f.write_bytes(payload)
    assert size.disk_bytes(f) == len(payload) == 15240
    assert size.gzip_bytes(f) == len(gzip.compress(payload, compresslevel=6, mtime=0))
    assert size.gzip_bytes(f) < len(payload)
    assert size.size_mb(f) == pytest.approx(15240 / 2**20)


def test_folder_and_openvino_pair(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.xml").write_bytes(b"x" * 100)
    (tmp_path / "m" / "a.bin").write_bytes(b"y" * 300)
    assert size.disk_bytes(tmp_path / "m") == 400
    assert size.disk_bytes(tmp_path / "m" / "a.xml") == 400  # the .bin beside it counts
    with pytest.raises(FileNotFoundError):
        size.disk_bytes(tmp_path / "missing.onnx")


def test_params_and_flops_on_known_layers():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert size.count_params(conv) == 8 * 3 * 9
    # 8x8 output, 8 channels, 27 MACs each -> 2 FLOPs per MAC
    assert size.gflops(conv, (1, 3, 8, 8)) == pytest.approx(2 * 8 * 64 * 27 / 1e9)
    lin = torch.nn.Linear(10, 4)
    assert size.count_params(lin) == 44
    assert size.gflops(lin, (1, 10)) == pytest.approx(2 * 40 / 1e9)


def test_gflops_agree_with_ultralytics():
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import get_flops

    model = DetectionModel("yolov8n.yaml", nc=6, verbose=False).eval()
    ours = size.gflops(model, (1, 3, 640, 640))
    assert ours == pytest.approx(get_flops(model, 640), rel=0.01)
    assert 8.0 < ours < 9.0  # yolov8n: 8.7 GFLOPs at 640 px


def test_sparsity_counts_exact_zeros_of_conv_and_linear_weights():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 2, bias=True), torch.nn.Flatten(),
                                torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].weight[0] = 0.0          # 4 of 8 conv weights
        model[2].weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 1.0]]))  # 1 of 4
        model[0].bias.zero_()             # biases and norms are not counted
    assert size.sparsity(model) == pytest.approx(5 / 12)
    with pytest.raises(ValueError, match="no convolution or linear"):
        size.sparsity(torch.nn.BatchNorm1d(3))
