"""fashion-scenes: a small segmentation dataset built from Fashion-MNIST.

Each scene is a colour picture, 64 x 64 pixels by default, showing one to three pieces of
clothing (Fashion-MNIST items, each kind equally common) lying on a textured cloth. Every item
is enlarged (1.2 to 2.0 times its 28 x 28 size), dyed with a random bright colour and dropped at a random place; items
may overlap, and one near the border may be partly cut off. The cloth underneath is not plain:
it is a soft blend of one or two colours with a faint stripe or checkerboard weave and a little
grain, so that "bright pixel = object" does not solve the task.

The label of a pixel says which kind of item is visible there: 0 for the background, then top
(T-shirt, pullover, dress, coat, shirt), trouser, footwear (sandal, sneaker, ankle boot) and
bag (see :data:`SCENE_CLASSES` and :class:`Variant`). A pixel belongs to an item when the
item's own grey value there is above :data:`ON_THRESHOLD` (a quarter of full brightness); the
item's dark surroundings are transparent, so a later item covers an earlier one only where the
later item itself has ink. Image and labels come from the same rule, so they always agree.

A variant fixes the classes, the items' scale and how many a scene holds. The first scenes
(:data:`V1`, the dataset ``fashion-scenes-v1``) label each of the ten Fashion-MNIST classes on
its own and place two to four smaller items (0.8 to 1.6 times); telling a shirt from a T-shirt
at that size was beyond the book's training budget.

Weak labels (chapter 7): the generator also knows where it put every item, so each scene has,
for free, what a cheaper annotation would give: each item's bounding box and class
(:func:`item_boxes`, :func:`load_scene_boxes`) and the image-level set of classes
(:func:`image_tags`). A box is the extent of the item's ink inside the frame, drawn around the
whole item even where a later item covers part of it, as an annotator boxes an object.
:func:`box_label_map` turns a scene's boxes into a coarse label map for training.

Scenes are generated, not downloaded: scene ``i`` of a split is fully determined by
``(seed, split, i)``. Training scenes use Fashion-MNIST's training images and test
scenes its test images, so no item picture is shared between the two splits.
:func:`load_scenes` caches the generated arrays under ``cache_dir() / "scenes"``.
"""

from __future__ import annotations

import hashlib
import os
import uuid
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..checks import ConfigError
from .fashion_mnist import FASHION_CLASSES, load_fashion_mnist
from .sources import cache_dir

IGNORE_INDEX = 255  # never produced here; reserved for "do not score this pixel" in the losses
SPLITS = ("train", "val")
TRAIN_SCENES = 10000
VAL_SCENES = 1000
DEFAULT_SIZE = 64
MIN_SIZE = 32
FORMAT_VERSION = 1  # bump whenever the generator changes, so old cache files are not reused

ON_THRESHOLD = 0.25  # an item pixel is "on" when its rescaled grey value exceeds this
VISIBLE = 0.75  # at least this fraction of an item's width and of its height lies in the frame
BOX_FIELDS = ("label", "top", "left", "bottom", "right")  # bottom and right exclusive


@dataclass(frozen=True)
class Variant:
    """What a family of scenes holds: its classes (background first), the scene label of each
    Fashion-MNIST class (``label_of[c]``, 1 or more), the items' scale (side = 28 x scale) and
    how many items a scene has (both ends included)."""
    name: str
    classes: tuple[str, ...]
    label_of: tuple[int, ...]
    scale_range: tuple[float, float]
    items_range: tuple[int, int]
    # each item's kind drawn first, uniformly over the classes, then a picture of that kind
    # (False: a picture drawn uniformly, so a kind is as common as its Fashion-MNIST classes)
    balanced: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# The first scenes: every Fashion-MNIST class its own label, two to four items of 22 to 45
# pixels. At the book's budget (a U-Net on a ResNet-10-T, 1,800 steps of 8 crops) every label
# gave 25.5 mIoU: telling a shirt from a T-shirt, a pullover and a coat at this size is beyond it.
V1 = Variant("v1", ("background",) + FASHION_CLASSES, tuple(range(1, 11)), (0.8, 1.6), (2, 4))
# The book's scenes: the ten classes merged into the four kinds a shape tells apart at a glance
# (tops: T-shirt, pullover, dress, coat, shirt; trousers; footwear: sandal, sneaker, ankle
# boot; bags), one to three larger items (34 to 56 pixels), each kind equally common (drawn
# as plain pictures, half the items would be tops and a tenth bags), so the task is learnable
# in the budget and the labeled split, not the model's size, limits what supervised training
# reaches. Chapter 6's calibration measures each choice.
V2 = Variant("v2", ("background", "top", "trouser", "footwear", "bag"),
             (1, 2, 1, 1, 1, 3, 1, 3, 4, 3), (1.2, 2.0), (1, 3), balanced=True)
VARIANTS = {v.name: v for v in (V1, V2)}
DEFAULT_VARIANT = V2
SCENE_CLASSES = DEFAULT_VARIANT.classes
NUM_CLASSES = len(SCENE_CLASSES)
MAX_ITEMS = max(v.items_range[1] for v in VARIANTS.values())  # rows of a scene's box array


@dataclass
class Layer:
    """One item as placed in a scene: its grey picture in [0, 1] (h x w), its RGB tint in
    [0, 1], the row and column of its top-left corner (may be negative) and its label."""
    intensity: np.ndarray
    colour: np.ndarray
    top: int
    left: int
    label: int


@lru_cache(maxsize=256)
def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of 1-D linear interpolation (pixel centres aligned, edges clamped)."""
    pos = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1 - frac)
    np.add.at(m, (rows, hi), frac)
    m.flags.writeable = False
    return m


def resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize of a 2-D float array (pixel centres aligned, edges clamped)."""
    h, w = img.shape
    return _interp_matrix(h, out_h) @ img @ _interp_matrix(w, out_w).T


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (each in [0, 1]) as an RGB triple in [0, 1]."""
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def make_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured cloth (3, size, size) in [0, 1]: a smooth blend of two muted colours, a faint
    stripe or checkerboard weave at a random angle and period, and a little per-pixel grain."""
    c1 = hsv_to_rgb(rng.random(), rng.uniform(0.2, 0.7), rng.uniform(0.25, 0.65))
    if rng.random() < 0.5:  # one colour, lighter and darker
        c2 = c1 * rng.uniform(0.5, 0.8)
    else:
        c2 = hsv_to_rgb(rng.random(), rng.uniform(0.2, 0.7), rng.uniform(0.25, 0.65))
    g = int(rng.integers(2, 6))
    field = resize(rng.random((g, g)), size, size)
    bg = c1[:, None, None] * (1 - field) + c2[:, None, None] * field
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(4.0, 12.0)
    amplitude = rng.uniform(0.04, 0.09)
    phase = rng.uniform(0, 2 * np.pi)
    yy, xx = _grid(size)
    u = (xx * np.cos(theta) + yy * np.sin(theta)) * (2 * np.pi / period) + phase
    if rng.random() < 0.5:
        pattern = np.sin(u)
    else:
        v = (-xx * np.sin(theta) + yy * np.cos(theta)) * (2 * np.pi / period)
        pattern = np.sign(np.sin(u) * np.sin(v))
    bg = bg + amplitude * pattern
    bg += 0.02 * rng.standard_normal((3, size, size), dtype=np.float32)
    return np.clip(bg, 0.0, 1.0, out=bg)


def variant_of(variant: "Variant | str") -> Variant:
    """A :class:`Variant` from itself or its name (one-line error naming the variants)."""
    if isinstance(variant, Variant):
        return variant
    if variant not in VARIANTS:
        raise ConfigError(f"unknown fashion-scenes variant {variant!r}; choose one of: "
                          f"{', '.join(VARIANTS)}")
    return VARIANTS[variant]


def draw_layers(items_x: np.ndarray, items_y: np.ndarray, rng: np.random.Generator,
                size: int, variant: Variant | str = DEFAULT_VARIANT) -> list[Layer]:
    """Draw the items of one scene: how many, which source images, their scale, tint, place."""
    v = variant_of(variant)
    k = int(rng.integers(v.items_range[0], v.items_range[1] + 1))
    if v.balanced:
        pools = _pools(np.asarray(items_y), v)
        idx = [p[rng.integers(len(p))] for p in (pools[c - 1] for c in
                                                   rng.integers(1, v.num_classes, size=k))]
    else:
        idx = rng.integers(0, len(items_x), size=k)
    layers = []
    for i in idx:
        grey = np.asarray(items_x[i], dtype=np.float64).reshape(items_x.shape[-2:]) / 255.0
        side = max(1, int(round(grey.shape[0] * rng.uniform(*v.scale_range))))
        side_w = max(1, int(round(side * grey.shape[1] / grey.shape[0])))
        intensity = np.clip(resize(grey, side, side_w), 0.0, 1.0)
        colour = hsv_to_rgb(rng.random(), rng.uniform(0.65, 1.0), rng.uniform(0.85, 1.0))
        slack_h = int(side * (1 - VISIBLE))
        slack_w = int(side_w * (1 - VISIBLE))
        top = int(rng.integers(-slack_h, size - side + slack_h + 1))
        left = int(rng.integers(-slack_w, size - side_w + slack_w + 1))
        layers.append(Layer(intensity, colour, top, left, v.label_of[int(items_y[i])]))
    return layers


_POOLS: dict[tuple, list[np.ndarray]] = {}


def _pools(items_y: np.ndarray, v: Variant) -> list[np.ndarray]:
    """The source pictures of each item class of ``v`` (its label 1, 2, ...), kept per source
    array: a scene's draw must not scan every label again."""
    key = (items_y.__array_interface__["data"][0], items_y.shape, v.name)
    if key not in _POOLS:
        label = np.asarray(v.label_of)[items_y.astype(np.int64)]
        _POOLS.clear()  # one source at a time: the train or the test pictures
        _POOLS[key] = [np.flatnonzero(label == c) for c in range(1, v.num_classes)]
    return _POOLS[key]


def compose(background: np.ndarray, layers: list[Layer]) -> tuple[np.ndarray, np.ndarray]:
    """Paint ``layers`` in order over ``background`` (3, H, W) in [0, 1].

    Where a layer's intensity is above :data:`ON_THRESHOLD` it replaces what is below, pixel =
    intensity x colour, and the label map takes its label; elsewhere the layer is transparent.
    Layers may stick out of the frame. Returns (image uint8 (3, H, W), mask uint8 (H, W)).
    """
    image = np.array(background, dtype=np.float64, copy=True)
    _, height, width = image.shape
    mask = np.zeros((height, width), dtype=np.uint8)
    for layer in layers:
        h, w = layer.intensity.shape
        r0, c0 = max(layer.top, 0), max(layer.left, 0)
        r1, c1 = min(layer.top + h, height), min(layer.left + w, width)
        if r0 >= r1 or c0 >= c1:
            continue
        part = layer.intensity[r0 - layer.top:r1 - layer.top, c0 - layer.left:c1 - layer.left]
        on = part > ON_THRESHOLD
        window = image[:, r0:r1, c0:c1]
        window[:, on] = np.asarray(layer.colour, dtype=np.float64)[:, None] * part[on]
        mask[r0:r1, c0:c1][on] = layer.label
    image = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    return image, mask


def generate_scene(items_x, items_y, rng: np.random.Generator, size: int = DEFAULT_SIZE,
                   variant: Variant | str = DEFAULT_VARIANT) -> tuple[np.ndarray, np.ndarray]:
    """One scene from the source images ``items_x`` (N x 28 x 28 or N x 1 x 28 x 28, uint8) and
    their classes ``items_y``: returns (image uint8 (3, size, size), mask uint8 (size, size)).

    Everything random comes from ``rng``, in a fixed order: background first, then the items.
    """
    items_x = np.asarray(items_x)
    items_y = np.asarray(items_y)
    background = make_background(rng, size)
    return compose(background, draw_layers(items_x, items_y, rng, size, variant))


def item_boxes(layers: list[Layer], size: int) -> np.ndarray:
    """The weak labels of one scene: int16 (MAX_ITEMS, 5), one row (label, top, left, bottom,
    right) per item, in drawing order, for the box around the item's ink (the pixels
    :func:`compose` paints, before later items cover any) inside the frame; bottom and right
    are exclusive. Rows past the last item, and an item with no ink in the frame, are -1."""
    out = np.full((MAX_ITEMS, len(BOX_FIELDS)), -1, dtype=np.int16)
    for row, layer in enumerate(layers):
        rows, cols = np.nonzero(layer.intensity > ON_THRESHOLD)
        rows, cols = rows + layer.top, cols + layer.left
        inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
        if inside.any():
            rows, cols = rows[inside], cols[inside]
            out[row] = (layer.label, rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
    return out


def image_tags(boxes: np.ndarray, num_classes: int = None) -> np.ndarray:
    """The image-level weak label of scenes from their boxes (..., MAX_ITEMS, 5): bool
    (..., num_classes), true for the background and for the class of every item."""
    num_classes = num_classes or len(SCENE_CLASSES)
    boxes = np.asarray(boxes)
    tags = np.zeros(boxes.shape[:-2] + (num_classes,), dtype=bool)
    tags[..., 0] = True
    labels = boxes[..., 0].astype(np.int64)
    lead = np.nonzero(labels >= 0)
    tags[lead[:-1] + (labels[lead],)] = True
    return tags


def box_label_map(boxes: np.ndarray, size: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """A coarse label map from one scene's boxes (MAX_ITEMS, 5): uint8 (size, size), the box's
    class inside a box, 0 (background) outside every box, and ``ignore_index`` where boxes of
    different classes overlap (which class is on top there the boxes do not say); where boxes
    of one class overlap, that class."""
    owner = np.full((size, size), -1, dtype=np.int16)  # -1: no box yet
    for label, top, left, bottom, right in np.asarray(boxes):
        if label < 0:
            continue
        win = owner[top:bottom, left:right]
        clash = (win >= 0) & (win != label)  # an ignored pixel stays ignored: no class is 255
        win[win < 0] = label
        win[clash] = ignore_index
    return np.where(owner < 0, 0, owner).astype(np.uint8)


def _check(split: str, n, size, seed=0) -> int:
    """Validate the arguments (one-line ConfigError naming the valid values); returns n."""
    if split not in SPLITS:
        raise ConfigError(f"unknown fashion-scenes split {split!r}; choose one of: "
                          f"{', '.join(SPLITS)}")
    if n is None:
        n = TRAIN_SCENES if split == "train" else VAL_SCENES
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ConfigError(f"fashion-scenes: number of scenes must be a positive integer, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ConfigError(f"fashion-scenes: size must be an integer >= {MIN_SIZE}, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"fashion-scenes: seed must be an integer >= 0, got {seed!r}")
    return int(n)


def scenes_from(items_x, items_y, split: str, n: int, size: int = DEFAULT_SIZE, seed: int = 0,
                variant: Variant | str = DEFAULT_VARIANT) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes 0..n-1 of ``split`` drawn from the given source images (no file access)."""
    n = _check(split, n, size, seed)
    items_x = np.asarray(items_x)
    items_y = np.asarray(items_y)
    split_id = SPLITS.index(split)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=np.uint8)
    for i in range(n):
        rng = np.random.default_rng([seed, split_id, i])
        images[i], masks[i] = generate_scene(items_x, items_y, rng, size, variant)
    return torch.from_numpy(images), torch.from_numpy(masks)


def boxes_from(items_x, items_y, split: str, n: int, size: int = DEFAULT_SIZE, seed: int = 0,
               variant: Variant | str = DEFAULT_VARIANT) -> torch.Tensor:
    """The boxes (:func:`item_boxes`) of scenes 0..n-1 of ``split``: int16 (n, MAX_ITEMS, 5).
    The generator's draws are replayed (background, then items), so these are the boxes of the
    very scenes :func:`scenes_from` paints; nothing is composed."""
    n = _check(split, n, size, seed)
    items_x = np.asarray(items_x)
    items_y = np.asarray(items_y)
    split_id = SPLITS.index(split)
    out = np.empty((n, MAX_ITEMS, len(BOX_FIELDS)), dtype=np.int16)
    for i in range(n):
        rng = np.random.default_rng([seed, split_id, i])
        make_background(rng, size)  # drawn first in every scene: replayed for the rng's state
        out[i] = item_boxes(draw_layers(items_x, items_y, rng, size, variant), size)
    return torch.from_numpy(out)


def load_scene_boxes(split: str, n: int | None = None, size: int = DEFAULT_SIZE, seed: int = 0,
                     root: str | None = None,
                     variant: Variant | str = DEFAULT_VARIANT) -> torch.Tensor:
    """Like :func:`boxes_from` on Fashion-MNIST, kept in ``cache_dir() / "scenes"``."""
    n = _check(split, n, size, seed)
    x, y, source_hash = _source(split, root)
    path = cache_path(split, n, size, seed, source_hash, "boxes", variant)
    try:
        with np.load(path) as f:
            boxes = f["boxes"]
        if boxes.shape == (n, MAX_ITEMS, len(BOX_FIELDS)) and boxes.dtype == np.int16:
            return torch.from_numpy(boxes)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # missing or damaged: generate again
    boxes = boxes_from(x, y, split, n, size, seed, variant)
    _write_npz(path, boxes=boxes.numpy())
    return boxes


def _source(split: str, root: str | None):
    (x_tr, y_tr, x_te, y_te), path = load_fashion_mnist(root, None)
    x, y = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    key = f"{path}|{len(x_tr)}|{len(x_te)}"
    return x[:, 0].numpy(), y.numpy(), hashlib.sha1(key.encode()).hexdigest()[:10]


def make_scenes(split: str, n: int | None = None, size: int = DEFAULT_SIZE, seed: int = 0,
                root: str | None = None,
                variant: Variant | str = DEFAULT_VARIANT) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate scenes 0..n-1 of ``split`` ("train" or "val"): (images uint8 (n, 3, size, size),
    masks uint8 (n, size, size)). ``n`` defaults to TRAIN_SCENES or VAL_SCENES; ``root`` is
    passed on to :func:`load_fashion_mnist`."""
    n = _check(split, n, size, seed)
    x, y, _ = _source(split, root)
    return scenes_from(x, y, split, n, size, seed, variant)


def cache_path(split: str, n: int, size: int, seed: int, source_hash: str,
               kind: str = "", variant: Variant | str = DEFAULT_VARIANT) -> Path:
    kind = f"{kind}-" if kind else ""
    v = variant_of(variant)
    # the first scenes keep their files' names; another variant's name carries its definition
    tag = "" if v == V1 else \
        f"{v.name}-{hashlib.sha1(repr(v).encode()).hexdigest()[:6]}-"
    name = (f"fashion-scenes-{kind}{tag}v{FORMAT_VERSION}-{split}-n{n}-s{size}-seed{seed}-"
            f"{source_hash}.npz")
    return cache_dir() / "scenes" / name


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write beside the target, then rename: a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # uncompressed: fast
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_cache(path: Path, n: int, size: int):
    try:
        with np.load(path) as f:
            images, masks = f["images"], f["masks"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # missing or damaged: generate again
    if (images.shape != (n, 3, size, size) or masks.shape != (n, size, size)
            or images.dtype != np.uint8 or masks.dtype != np.uint8):
        return None
    return torch.from_numpy(images), torch.from_numpy(masks)


def load_scenes(split: str, n: int | None = None, size: int = DEFAULT_SIZE, seed: int = 0,
                root: str | None = None,
                variant: Variant | str = DEFAULT_VARIANT) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`make_scenes`, but kept in ``cache_dir() / "scenes"`` after the first call."""
    n = _check(split, n, size, seed)
    _, _, source_hash = _source(split, root)
    path = cache_path(split, n, size, seed, source_hash, variant=variant)
    if path.is_file():
        cached = _read_cache(path, n, size)
        if cached is not None:
            return cached
    images, masks = make_scenes(split, n, size, seed, root, variant)
    _write_npz(path, images=images.numpy(), masks=masks.numpy())
    return images, masks


__all__ = ["Variant", "VARIANTS", "V1", "V2", "DEFAULT_VARIANT", "variant_of", "SCENE_CLASSES", "NUM_CLASSES", "IGNORE_INDEX", "SPLITS", "TRAIN_SCENES",
           "VAL_SCENES", "ON_THRESHOLD", "Layer", "compose", "generate_scene", "make_scenes",
           "scenes_from", "load_scenes", "MAX_ITEMS", "BOX_FIELDS", "item_boxes", "image_tags",
           "box_label_map", "boxes_from", "load_scene_boxes"]
