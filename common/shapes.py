"""``shapes``: a detection dataset generated deterministically, in YOLO layout, offline.

Six classes of filled shapes, drawn at random size, rotation and colour on textured
backgrounds with noise, distractor strokes and partial overlaps. It is deliberately harder
than "a few shapes on a flat background", so that compression damage shows in mAP50-95:
small objects, low contrast, rotated squares versus diamonds, hexagons versus circles.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CLASSES = ("circle", "square", "triangle", "star", "hexagon", "cross")
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class ShapesConfig:
    """Everything that determines the generated images (part of the cache key)."""

    n_train: int = 400
    n_val: int = 200
    n_test: int = 200
    imgsz: int = 128
    min_objects: int = 1
    max_objects: int = 5
    min_size: int = 16
    max_size: int = 48
    max_iou: float = 0.3
    noise: float = 6.0
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.n_train, self.n_val, self.n_test) < 1:
            raise ValueError("every split needs at least one image")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError("need 1 <= min_objects <= max_objects")
        if not 4 <= self.min_size <= self.max_size < self.imgsz:
            raise ValueError("need 4 <= min_size <= max_size < imgsz")

    def key(self) -> str:
        digest = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]
        return (f"shapes-v{GENERATOR_VERSION}-{self.imgsz}px-"
                f"{self.n_train}-{self.n_val}-{self.n_test}-s{self.seed}-{digest}")


def _polygon(cls: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of a shape of circumradius ``r`` (circle handled by the caller)."""
    def ring(n: int, radii: list[float], offset: float = 0.0) -> list[tuple[float, float]]:
        pts = []
        for i in range(n):
            a = angle + offset + 2 * math.pi * i / n
            rr = radii[i % len(radii)]
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts

    if cls == "square":
        return ring(4, [r], math.pi / 4)
    if cls == "triangle":
        return ring(3, [r], -math.pi / 2)
    if cls == "star":
        return ring(10, [r, 0.45 * r], -math.pi / 2)
    if cls == "hexagon":
        return ring(6, [r])
    if cls == "cross":  # a plus sign of arm width 0.4 r, rotated
        w, pts = 0.4 * r, []
        base = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r), (-w, -r), (-w, -w),
                (-r, -w), (-r, w), (-w, w), (-w, r)]
        ca, sa = math.cos(angle), math.sin(angle)
        for x, y in base:
            pts.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
        return pts
    raise ValueError(cls)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Gradient or blotchy low-frequency texture, float32 HxWx3 in [0, 255]."""
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if rng.random() < 0.5:
        t = np.linspace(0, 1, size)
        ang = rng.uniform(0, 2 * math.pi)
        g = (np.cos(ang) * t[None, :] + np.sin(ang) * t[:, None])
        g = (g - g.min()) / (np.ptp(g) + 1e-6)
        img = c1 * (1 - g[..., None]) + c2 * g[..., None]
    else:
        from PIL import Image

        cells = int(rng.integers(3, 7))
        grid = rng.uniform(0, 1, (cells, cells)).astype(np.float32)
        up = np.asarray(Image.fromarray((grid * 255).astype(np.uint8)).resize(
            (size, size), Image.BICUBIC), dtype=np.float32) / 255.0
        img = c1 * (1 - up[..., None]) + c2 * up[..., None]
    return img.astype(np.float32)


def _draw_image(rng: np.random.Generator, cfg: ShapesConfig) -> tuple[np.ndarray, list[tuple]]:
    """One image (uint8 HxWx3) and its labels [(cls, x1, y1, x2, y2), ...] in pixels."""
    from PIL import Image, ImageDraw

    size = cfg.imgsz
    bg = _background(rng, size)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 3))):  # unlabelled distractor strokes
        pts = [tuple(rng.uniform(0, size, 2)) for _ in range(2)]
        draw.line(pts, fill=tuple(int(v) for v in rng.uniform(0, 255, 3)),
                  width=int(rng.integers(1, 3)))
    labels: list[tuple] = []
    boxes: list[np.ndarray] = []
    for _ in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
        for _attempt in range(20):
            cls_id = int(rng.integers(len(CLASSES)))
            r = rng.uniform(cfg.min_size, cfg.max_size) / 2
            cx, cy = rng.uniform(r + 1, size - r - 1, 2)
            angle = rng.uniform(0, 2 * math.pi)
            if CLASSES[cls_id] == "circle":
                pts = None
                box = np.array([cx - r, cy - r, cx + r, cy + r])
            else:
                pts = _polygon(CLASSES[cls_id], cx, cy, r, angle)
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                box = np.array([min(xs), min(ys), max(xs), max(ys)])
            if all(_iou(box, b) <= cfg.max_iou for b in boxes):
                break
        else:
            continue
        local = bg[int(cy), int(cx)]
        for _ in range(10):  # keep some contrast with the local background, but not always a lot
            colour = rng.uniform(0, 255, 3)
            if np.abs(colour - local).sum() > 150:
                break
        fill = tuple(int(v) for v in colour)
        if pts is None:
            draw.ellipse(box.tolist(), fill=fill)
        else:
            draw.polygon(pts, fill=fill)
        boxes.append(box)
        labels.append((cls_id, *np.clip(box, 0, size).tolist()))
    arr = np.asarray(img, dtype=np.float32)
    arr += rng.normal(0, cfg.noise, arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8), labels


def generate(root: Path, cfg: ShapesConfig = ShapesConfig()) -> Path:
    """Write the dataset under ``root/cfg.key()`` (atomically) and return its data.yaml path.

    Already generated datasets are reused; a half-written folder is never left behind.
    """
    from PIL import Image
    from tqdm import tqdm  # text bars: no ipywidgets needed, no warnings

    final = Path(root) / cfg.key()
    yaml_path = final / "data.yaml"
    if yaml_path.exists():
        return yaml_path
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-shapes-", dir=final.parent))
    try:
        rng = np.random.default_rng(cfg.seed)
        splits = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
        total = sum(splits.values())
        # a few hundred images take seconds: a bar only for sets big enough to wait for
        with tqdm(total=total, desc=f"generating {cfg.key()}", leave=False,
                  disable=total < 5000) as bar:
            for split, n in splits.items():
                (tmp / "images" / split).mkdir(parents=True)
                (tmp / "labels" / split).mkdir(parents=True)
                for i in range(n):
                    arr, labels = _draw_image(rng, cfg)
                    name = f"{split}_{i:05d}"
                    Image.fromarray(arr).save(tmp / "images" / split / f"{name}.png")
                    s = cfg.imgsz
                    lines = [f"{c} {(x1 + x2) / 2 / s:.6f} {(y1 + y2) / 2 / s:.6f} "
                             f"{(x2 - x1) / s:.6f} {(y2 - y1) / s:.6f}"
                             for c, x1, y1, x2, y2 in labels]
                    (tmp / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + "\n")
                    bar.update(1)
        names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASSES))
        (tmp / "data.yaml").write_text(
            f"# generated by common.shapes, config: {json.dumps(asdict(cfg))}\n"
            f"train: images/train\nval: images/val\ntest: images/test\n"
            f"names:\n{names}\n")
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return yaml_path
