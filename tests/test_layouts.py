"""Datasets laid out the way real tools export them (issue #16): every YOLO data.yaml layout that
ultralytics accepts, and ImageFolder trees of mixed image formats, each built in a temporary folder."""

import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from common import data, workloads
from common.data import DatasetError
from common.shapes import ShapesConfig, generate

NAMES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A small generated YOLO set: images/{train,val,test} and labels/{train,val,test}."""
    return generate(tmp_path_factory.mktemp("shapes"), ShapesConfig(n_train=6, n_val=4, n_test=4, seed=1)).parent


def _counts(y, splits=("train", "val")):
    return {s: len(data.detection_images(str(y), s)) for s in splits}


def _copy_split(src, split, images_dir, labels_dir):
    images_dir.mkdir(parents=True)
    labels_dir.mkdir(parents=True)
    for f in sorted((src / "images" / split).iterdir()):
        shutil.copy(f, images_dir / f.name)
        shutil.copy(src / "labels" / split / (f.stem + ".txt"), labels_dir / (f.stem + ".txt"))


def test_roboflow_export_with_valid_folders_and_dotdot_paths(shapes, tmp_path):
    # Roboflow writes data.yaml beside train/ valid/ test/, with paths starting "../"
    root = tmp_path / "export"
    for split, folder in (("train", "train"), ("val", "valid"), ("test", "test")):
        _copy_split(shapes, split, root / folder / "images", root / folder / "labels")
    y = root / "data.yaml"
    y.write_text(yaml.safe_dump({"train": "../train/images", "val": "../valid/images", "test": "../test/images",
                                 "nc": 3, "names": NAMES}))
    assert data.resolve("yolov8n", str(y)) == str(y.resolve())
    assert _counts(y, ("train", "val", "test")) == {"train": 6, "val": 4, "test": 4}
    img = data.detection_images(str(y), "val")[0]
    assert data.label_path(img) == root / "valid" / "labels" / (img.stem + ".txt")
    assert data.detection_split(str(y)) == "test"


def test_absolute_path_names_mapping_and_no_test_split(shapes, tmp_path):
    y = tmp_path / "cfg" / "mine.yaml"
    y.parent.mkdir()
    y.write_text(yaml.safe_dump({"path": str(shapes), "train": "images/train", "val": "images/val",
                                 "names": dict(enumerate(NAMES))}))
    data.resolve("yolov8n", str(y))
    assert _counts(y) == {"train": 6, "val": 4}
    assert data.detection_split(str(y)) == "val"          # scored on val, and the notes say so
    with pytest.raises(DatasetError, match=r"has no 'test' split; it has: \['train', 'val'\]"):
        data.detection_images(str(y), "test")


def test_every_row_of_a_set_without_test_split_says_it_was_scored_on_val(shapes, tmp_path, monkeypatch):
    from common import params, report
    from common import registry as schema

    monkeypatch.setattr(schema, "DATASET_NOTES", {})      # the registry owns the notes upsert adds
    y = tmp_path / "data.yaml"
    y.write_text(yaml.safe_dump({"path": str(shapes), "train": "images/train", "val": "images/val", "names": NAMES}))
    params.course({"YOLO_DATASET": str(y)})
    label = data.dataset_label(str(y))
    registry = tmp_path / "experiments.csv"
    rows = [{"homework": hw, "workload": "yolov8n", "dataset": label, "name": "x", "notes": n}
            for hw, n in (("hw2", "cpu: median of 10 runs"), ("hw3", ""))]
    rows.append({"homework": "hw2", "workload": "yolov8n", "dataset": "shapes", "name": "x", "notes": "as it was"})
    report.upsert(rows, registry)
    report.upsert([{**rows[0], "notes": f"{params.SCORED_ON_VAL}; cpu: median of 10 runs"}], registry)  # said once
    notes = [r["notes"] for r in report.read_rows(registry)]
    assert notes == [f"{params.SCORED_ON_VAL}; cpu: median of 10 runs", params.SCORED_ON_VAL, "as it was"]
    params.course({"YOLO_DATASET": str(shapes / "data.yaml")})
    assert list(schema.DATASET_NOTES) == [("yolov8n", label)]   # a set with a test split adds none


def test_relative_path_and_no_path_key(shapes, tmp_path, monkeypatch):
    # ultralytics reads a relative `path` from the working directory; without `path`, from the yaml's folder
    monkeypatch.chdir(tmp_path)
    shutil.copytree(shapes, tmp_path / "sets" / "mine")
    rel = tmp_path / "rel.yaml"
    rel.write_text(yaml.safe_dump({"path": "sets/mine", "train": "images/train", "val": "images/val", "names": NAMES}))
    assert _counts(rel) == {"train": 6, "val": 4}
    bare = tmp_path / "sets" / "mine" / "bare.yaml"
    bare.write_text(yaml.safe_dump({"train": "images/train", "val": "images/val", "test": "images/test", "names": NAMES}))
    data.resolve("yolov8n", str(bare))
    assert _counts(bare, ("train", "val", "test")) == {"train": 6, "val": 4, "test": 4}


def test_txt_lists_backgrounds_and_upper_case_extensions(shapes, tmp_path):
    root = tmp_path / "lists"
    shutil.copytree(shapes, root)
    val = sorted((root / "images" / "val").iterdir())
    val[0].rename(val[0].with_suffix(".PNG"))                       # upper-case extension
    (root / "labels" / "val" / (val[1].stem + ".txt")).unlink()     # a background image: no label file
    (root / "labels" / "val" / (val[2].stem + ".txt")).write_text("")  # an empty label file
    (root / "images" / "val" / ".DS_Store").write_bytes(b"\0")       # hidden junk is not an image
    train = sorted((root / "images" / "train").iterdir())
    (root / "train.txt").write_text("\n".join(f"./images/train/{f.name}" for f in train[:4]) + "\n")
    y = root / "data.yaml"
    y.write_text(yaml.safe_dump({"path": str(root), "train": "train.txt", "val": "images/val", "names": NAMES}))
    data.resolve("yolov8n", str(y))
    assert data.detection_images(str(y), "train") == [root / "images" / "train" / f.name for f in train[:4]]
    files = data.detection_images(str(y), "val")
    assert len(files) == 4 and files[0].suffix == ".PNG"
    for f in files[1:3]:
        assert data.read_yolo_labels(f, 128, 128).shape == (0, 5)
    assert data.read_yolo_labels(files[3], 128, 128).shape[0] >= 1


def test_labels_beside_images_when_there_is_no_images_folder(tmp_path):
    img = tmp_path / "pics" / "a.jpg"
    assert data.label_path(img) == tmp_path / "pics" / "a.txt"
    nested = tmp_path / "images" / "x" / "images" / "b.png"           # only the last images/ changes
    assert data.label_path(nested) == tmp_path / "images" / "x" / "labels" / "b.txt"


def test_mixed_image_sizes_are_read_at_the_model_size(shapes, tmp_path):
    root = tmp_path / "mixed"
    shutil.copytree(shapes, root)
    for i, f in enumerate(sorted((root / "images" / "test").iterdir())):
        Image.open(f).resize((96 + 40 * i, 64 + 24 * i)).save(f)    # other sizes and aspect ratios
    y = root / "data.yaml"
    y.write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val",
                                 "test": "images/test", "names": NAMES}))
    bl = workloads.Baseline(workloads.TrainConfig("yolov8n", str(y), 64, 1, 2, 0.01), None, None, str(y), 0.0, [])
    x = workloads.sample_inputs(bl, 4)
    assert x.shape == (4, 3, 64, 64) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    no_test = root / "no-test.yaml"                             # "test" images are val's there
    no_test.write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val", "names": NAMES}))
    bl = workloads.Baseline(workloads.TrainConfig("yolov8n", str(no_test), 64, 1, 2, 0.01), None, None, str(no_test), 0.0, [])
    assert workloads.sample_inputs(bl, 4).shape == (4, 3, 64, 64)


def test_a_yaml_whose_images_are_missing_fails_before_any_work(tmp_path):
    y = tmp_path / "data.yaml"
    y.write_text(yaml.safe_dump({"train": "images/train", "val": "images/val", "names": NAMES}))
    with pytest.raises(DatasetError, match="images/val|images not found|does not exist"):
        data.resolve("yolov8n", str(y))
    y.write_text("names: [a]\nval: images/val\n")
    with pytest.raises(DatasetError, match=r"lacks \['train'\]"):
        data.resolve("yolov8n", str(y))


def test_the_detector_is_scored_on_val_when_there_is_no_test_split(shapes, tmp_path, monkeypatch):
    y = tmp_path / "data.yaml"
    y.write_text(yaml.safe_dump({"path": str(shapes), "train": "images/train", "val": "images/val", "names": NAMES}))
    seen = {}

    class FakeYOLO:
        def val(self, **kw):
            seen.update(kw)
            box = type("Box", (), {"mp": 0.5, "mr": 0.5, "map50": 0.5, "map": 0.25})
            return type("R", (), {"box": box})

    monkeypatch.setattr(workloads, "yolo", lambda *a, **k: FakeYOLO())
    workloads.evaluate_detector(tmp_path / "model.onnx", str(y))
    assert seen["split"] == "val"
    shutil.copy(y, tmp_path / "with-test.yaml")
    (tmp_path / "with-test.yaml").write_text(y.read_text() + "test: images/test\n")
    workloads.evaluate_detector(tmp_path / "model.onnx", str(tmp_path / "with-test.yaml"))
    assert seen["split"] == "test"


# --------------------------------------------------------------------------- ImageFolder

def _save(path, array, mode=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path, **kw)


def test_image_folder_of_every_common_format(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for c in ("cat", "dog"):
        d = root / c
        _save(d / "gray.png", rng.integers(0, 255, (20, 30), dtype=np.uint8))                  # L, not square
        _save(d / "rgba.png", rng.integers(0, 255, (25, 25, 4), dtype=np.uint8))               # RGBA
        pal = Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).convert("P")
        pal.info["transparency"] = 0
        pal.save(d / "palette.png", transparency=0)                                             # P + transparency
        _save(d / "deep.png", np.full((12, 12), 40000, dtype=np.uint16))                       # 16-bit gray
        _save(d / "photo.JPG", rng.integers(0, 255, (40, 28, 3), dtype=np.uint8), quality=90)   # upper-case JPEG
        _save(d / "small.Png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
        (d / ".DS_Store").write_bytes(b"\0\1")                                                  # hidden junk
        (d / "._photo.JPG").write_bytes(b"AppleDouble")                                         # macOS resource fork
        (d / "notes.txt").write_text("not an image")
    (root / ".ipynb_checkpoints").mkdir()                                                       # hidden folder, no class
    assert data.image_folder_files(root)["cat"][0].name == "deep.png"
    d = data.load_classification(str(root), img_size=16)
    assert d.classes == ["cat", "dog"] and d.x_train.shape[1:] == (3, 16, 16)
    assert sum(d.sizes().values()) == 12
    deep = data._read_rgb(root / "cat" / "deep.png", 8)
    assert np.allclose(deep, 40000 / 65535, atol=1 / 255)                # scaled, not clipped at 255


def test_image_folder_errors_name_the_problem_before_loading(tmp_path):
    rng = np.random.default_rng(1)
    for c, n in (("a", 6), ("b", 3)):
        for i in range(n):
            _save(tmp_path / c / f"{i}.png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"at least 5 images .* too few in \{'b': 3\}"):
        data.resolve("resnet18", str(tmp_path))
    for i in range(3, 6):
        _save(tmp_path / "b" / f"{i}.png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    (tmp_path / "b" / "5.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"5.png: not a readable image"):
        data.load_classification(str(tmp_path), img_size=8)


def test_two_datasets_in_folders_of_the_same_name_never_share_a_registry_key(tmp_path):
    one, two = tmp_path / "x" / "mine", tmp_path / "y" / "mine"
    a, b = data.dataset_label(str(one)), data.dataset_label(str(two))
    assert a != b and a.startswith("mine-") and b.startswith("mine-")
    assert data.dataset_label(str(one / "data.yaml")).startswith("mine-")
    assert data.dataset_label(str(one)) == a                              # stable
    assert data.dataset_label("digits") == "digits" and data.dataset_label("shapes") == "shapes"
