import hashlib
from pathlib import Path

import numpy as np
import pytest

from common import data
from common.data import DatasetError
from common.shapes import CLASSES, ShapesConfig, generate


@pytest.mark.parametrize("workload, dataset, message", [
    ("bert", "digits", "valid workloads: resnet18, yolov8n"),
    ("resnet18", "imagenet", "valid names: digits, fashion-mnist, fashion-mnist-small, cifar10"),
    ("yolov8n", "voc", "valid names: shapes, coco8, coco128"),
    ("resnet18", "shapes", "belongs to workload 'yolov8n'"),
    ("yolov8n", "/nonexistent/data.yaml", "data.yaml not found"),
    ("resnet18", "/nonexistent/folder", "ImageFolder directory not found"),
])
def test_bad_names_fail_early_naming_the_choices(workload, dataset, message):
    with pytest.raises(DatasetError, match=message):
        data.resolve(workload, dataset)


@pytest.mark.parametrize("workload, dataset, fallback", [
    ("resnet18", "cifar10", "built-in 'digits' or the default 'fashion-mnist-small' instead"),
    ("yolov8n", "coco128", "built-in 'shapes' instead")])
def test_network_datasets_fail_early_offline(monkeypatch, workload, dataset, fallback):
    monkeypatch.setenv("NNC_OFFLINE", "1")
    with pytest.raises(DatasetError, match=f"offline; use the {fallback}"):
        data.resolve(workload, dataset)


def test_yaml_without_required_keys(tmp_path):
    y = tmp_path / "data.yaml"
    y.write_text("train: images/train\n")
    with pytest.raises(DatasetError, match=r"lacks \['val', 'names'\]"):
        data.resolve("yolov8n", str(y))


def test_empty_image_folder(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    with pytest.raises(DatasetError, match="not a usable ImageFolder"):
        data.resolve("resnet18", str(tmp_path))


def test_image_folder_loads(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    d = data.load_classification(str(tmp_path), img_size=16)
    assert d.classes == ["a", "b"] and d.x_train.shape[1:] == (3, 16, 16)
    assert sum(d.sizes().values()) == 12


def test_digits_split_is_fixed_stratified_and_normalised():
    a = data.load_classification("digits", img_size=32)
    b = data.load_classification("digits", img_size=32)
    assert a.sizes() == {"train": 1077, "val": 360, "test": 360}
    assert a.x_train.shape == (1077, 3, 32, 32)
    assert (a.x_test == b.x_test).all() and (a.y_train == b.y_train).all()
    assert np.bincount(a.y_test.numpy()).min() >= 35  # every digit in the test split
    assert abs(float(a.x_train.mean())) < 1e-3 and abs(float(a.x_train.std()) - 1) < 0.05
    with pytest.raises(DatasetError, match="unknown split"):
        a.split("holdout")


def test_calibration_subset_bounds():
    d = data.load_classification("digits", img_size=16)
    assert data.calibration_subset(d, 64).shape == (64, 3, 16, 16)
    assert (data.calibration_subset(d, 8, seed=1) == data.calibration_subset(d, 8, seed=1)).all()
    for n in (0, 1078):
        with pytest.raises(DatasetError, match="between 1 and the training split size 1077"):
            data.calibration_subset(d, n)


def _tree_digest(root):
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "data.yaml"):
        h.update(f.relative_to(root).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def test_shapes_generation_is_deterministic_atomic_and_valid(tmp_path):
    cfg = ShapesConfig(n_train=12, n_val=4, n_test=4, seed=3)
    y1 = generate(tmp_path / "one", cfg)
    y2 = generate(tmp_path / "two", cfg)
    assert _tree_digest(y1.parent) == _tree_digest(y2.parent)
    assert [p.name for p in (tmp_path / "one").iterdir()] == [cfg.key()]  # no temp dirs left
    labels = [line.split() for f in (y1.parent / "labels").rglob("*.txt")
              for line in f.read_text().splitlines() if line]
    assert len(labels) >= 20
    cls = np.array([int(l[0]) for l in labels])
    box = np.array([[float(v) for v in l[1:]] for l in labels])
    assert cls.min() >= 0 and cls.max() < len(CLASSES)
    assert (box > 0).all() and (box <= 1).all()
    assert len(data.detection_images(str(y1), "test")) == 4
    with pytest.raises(ValueError, match="min_size"):
        ShapesConfig(min_size=2)


def test_shapes_generation_failure_leaves_nothing(tmp_path, monkeypatch):
    import common.shapes as shapes

    def boom(*a, **k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(shapes, "_draw_image", boom)
    with pytest.raises(RuntimeError):
        generate(tmp_path, ShapesConfig(n_train=2, n_val=1, n_test=1))
    assert list(tmp_path.iterdir()) == []


class FakeCIFAR10:
    """Stands in for torchvision's CIFAR10 so the code after the download is exercised offline."""
    calls: list = []
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    def __init__(self, root, train, download):
        FakeCIFAR10.calls.append((root, train, download))
        n = 100 if train else 20
        rng = np.random.default_rng(int(train))
        self.data = rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
        self.targets = list(np.arange(n) % 10)


def test_cifar10_path_up_to_the_download(tmp_path, monkeypatch):
    import torchvision.datasets

    monkeypatch.setenv("NNC_ARTIFACTS", str(tmp_path))
    monkeypatch.setattr(data.env, "online", lambda *a, **k: True)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    d = data.load_classification("cifar10")
    assert [c[1:] for c in FakeCIFAR10.calls] == [(True, True), (False, True)]
    assert FakeCIFAR10.calls[0][0] == tmp_path / "data" / "cifar10"   # cached in artifacts/
    assert d.sizes() == {"train": 90, "val": 10, "test": 20} and d.flip
    assert d.classes[0] == "airplane" and d.x_test.shape == (20, 3, 32, 32)


def test_coco_and_pretrained_weights_up_to_the_download(tmp_path, monkeypatch):
    import ultralytics.utils.downloads as downloads

    from common import workloads

    monkeypatch.setenv("NNC_ARTIFACTS", str(tmp_path))
    monkeypatch.setattr(data.env, "online", lambda *a, **k: True)
    assert data.detection_yaml("coco128") == "coco128.yaml"  # ultralytics downloads it on use
    with pytest.raises(DatasetError, match="only apply to dataset 'shapes'"):
        data.detection_yaml("coco8", n_train=5)
    fetched = []

    def fake_download(path):
        fetched.append(path)
        Path(path).write_bytes(b"weights")
        return path

    monkeypatch.setattr(downloads, "attempt_download_asset", fake_download)
    # keep ultralytics' persisted settings (datasets/weights dirs) out of this temporary folder
    monkeypatch.setattr(workloads, "ultralytics_setup", lambda: None)
    path = workloads.pretrained_yolov8n()
    assert path == tmp_path / "weights" / "yolov8n.pt" and fetched == [str(path)]
    assert workloads.pretrained_yolov8n() == path and len(fetched) == 1  # cached afterwards


def _write_idx(path: Path, a: np.ndarray) -> None:
    import gzip

    header = bytes([0, 0, 0x08, a.ndim]) + np.asarray(a.shape, ">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + a.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_the_debian_package_layout(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for split, n in (("train", 50), ("test", 20)):
        images, labels = data.FASHION_MNIST_FILES[split]
        _write_idx(tmp_path / images, rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / labels, np.arange(n) % 10)
    monkeypatch.setenv("NNC_FASHION_MNIST_DIR", str(tmp_path))
    monkeypatch.setenv("NNC_OFFLINE", "1")                      # installed files need no network
    assert data.resolve("resnet18", "fashion-mnist") == "fashion-mnist"
    d = data.load_classification("fashion-mnist", 32, seed=0)
    assert d.sizes() == {"train": 45, "val": 5, "test": 20}     # official test set; 10 % of train for val
    assert d.x_train.shape[1:] == (3, 32, 32) and d.classes[9] == "Ankle boot" and d.flip
    assert d.y_test.tolist() == [i % 10 for i in range(20)]     # the test split in file order
    # a truncated file is named, not silently mis-shaped
    _write_idx(tmp_path / "bad.gz", np.zeros((3, 28, 28)))
    import gzip

    with gzip.open(tmp_path / "bad.gz", "rb") as f:
        raw = f.read()
    with gzip.open(tmp_path / "bad.gz", "wb") as f:
        f.write(raw[:-10])
    with pytest.raises(DatasetError, match="header says \\(3, 28, 28\\)"):
        data.read_idx(tmp_path / "bad.gz")


@pytest.mark.parametrize("dataset", ["fashion-mnist", "fashion-mnist-small"])
def test_fashion_mnist_offline_without_the_files_names_both_remedies_and_digits(tmp_path, monkeypatch, dataset):
    monkeypatch.setenv("NNC_FASHION_MNIST_DIR", str(tmp_path))  # empty: not installed
    monkeypatch.setenv("NNC_OFFLINE", "1")
    with pytest.raises(DatasetError, match=r"run `bash \.ci/data\.sh`.*apt install dataset-fashion-mnist.*"
                                           r"online for torchvision's download; or use the built-in 'digits'"):
        data.resolve("resnet18", dataset)


def test_fashion_mnist_is_found_where_data_sh_unpacks_it(tmp_path, monkeypatch):
    """No $NNC_FASHION_MNIST_DIR, no installed package: the machine-wide cache's copy is used."""
    monkeypatch.delenv("NNC_FASHION_MNIST_DIR", raising=False)
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path / "not-installed")
    monkeypatch.setenv("NNC_SHARED_CACHE", str(tmp_path / "cache"))
    assert data.fashion_mnist_dir() is None
    cache = tmp_path / "cache" / "datasets" / "fashion-mnist"
    cache.mkdir(parents=True)
    for f in [f for pair in data.FASHION_MNIST_FILES.values() for f in pair][:-1]:
        (cache / f).write_bytes(b"")
    assert data.fashion_mnist_dir() is None                     # one file missing: not usable
    (cache / data.FASHION_MNIST_FILES["test"][1]).write_bytes(b"")
    assert data.fashion_mnist_dir() == cache == data.fashion_mnist_cache()
    monkeypatch.setenv("NNC_SHARED_CACHE", "0")                 # the cache turned off
    assert data.fashion_mnist_dir() is None and data.fashion_mnist_cache() is None


def test_data_sh_unpacks_debian_s_package_into_the_cache(tmp_path):
    """The set-up step of both README commands, run against a fake apt-get that serves a .deb
    holding the package's layout: the four files land in the cache and a second call is a no-op."""
    import shutil
    import subprocess

    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed (not a Debian-family machine)")
    pkg = tmp_path / "pkg"
    share = pkg / "usr" / "share" / "datasets" / "fashion-mnist"
    share.mkdir(parents=True)
    for f in [f for pair in data.FASHION_MNIST_FILES.values() for f in pair]:
        (share / f).write_bytes(f.encode())
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN" / "control").write_text("Package: dataset-fashion-mnist\nVersion: 1\nArchitecture: all\n"
                                            "Maintainer: test <t@t>\nDescription: test\n")
    deb = tmp_path / "dataset-fashion-mnist_1_all.deb"
    subprocess.run(["dpkg-deb", "-b", str(pkg), str(deb)], check=True, capture_output=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\n[ \"$1\" = download ] && cp {deb} . && echo served >> {tmp_path}/calls\n")
    (bin_dir / "apt-get").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "NNC_SHARED_CACHE": str(tmp_path / "cache")}
    script = Path(__file__).resolve().parents[1] / ".ci" / "data.sh"
    if all((data.FASHION_MNIST_DIR / f).is_file() for pair in data.FASHION_MNIST_FILES.values() for f in pair):
        pytest.skip("the Debian package is installed here: data.sh has nothing to do")
    for _ in range(2):
        subprocess.run(["bash", str(script)], check=True, env=env, capture_output=True)
    got = tmp_path / "cache" / "datasets" / "fashion-mnist"
    assert sorted(p.name for p in got.iterdir()) == sorted(f for pair in data.FASHION_MNIST_FILES.values() for f in pair)
    assert (got / "t10k-labels-idx1-ubyte.gz").read_bytes() == b"t10k-labels-idx1-ubyte.gz"
    assert (tmp_path / "calls").read_text() == "served\n"            # fetched once, then found


def test_the_installed_fashion_mnist_is_the_published_one():
    images, labels, n_train = data._fashion_mnist()
    assert images.shape == (70000, 28, 28) and n_train == 60000
    assert np.bincount(labels[:n_train]).tolist() == [6000] * 10
    assert np.bincount(labels[n_train:]).tolist() == [1000] * 10


def test_fashion_mnist_small_is_a_balanced_subset_of_each_official_split():
    small = data.load_classification("fashion-mnist-small", 28, seed=0)
    assert small.sizes() == dict(zip(("train", "val", "test"), data.FASHION_MNIST_SMALL))
    for split, n in zip(("train", "val", "test"), data.FASHION_MNIST_SMALL):
        assert np.bincount(small.split(split)[1].numpy()).tolist() == [n // 10] * 10
    images, labels, n_train = data._fashion_mnist()
    raw = lambda x: np.rint((x[:, 0].numpy() * small.std[0] + small.mean[0]) * 255)  # noqa: E731
    pixels = lambda a: {r.tobytes() for r in a.astype(np.uint8)}  # noqa: E731
    test = pixels(raw(small.x_test))
    assert test <= pixels(images[n_train:]) and not test & pixels(images[:n_train])   # official test images
    train, val = pixels(raw(small.x_train)), pixels(raw(small.x_val))
    assert not train & val and (train | val) <= pixels(images[:n_train])
    again = data.load_classification("fashion-mnist-small", 28, seed=0)
    assert again.y_train.tolist() == small.y_train.tolist()                           # fixed draw


def test_a_file_that_is_not_idx_is_named(tmp_path):
    (tmp_path / "labels.idx").write_bytes(b"PK\x03\x04 a zip, not IDX")
    with pytest.raises(DatasetError, match="labels.idx is not an IDX file of uint8"):
        data.read_idx(tmp_path / "labels.idx")
    (tmp_path / "labels.gz").write_bytes(b"not gzip")
    with pytest.raises(DatasetError, match="cannot read .*labels.gz"):
        data.read_idx(tmp_path / "labels.gz")
