import numpy as np
import pytest
import torch

from semibook.config import ConfigError
from semibook.data import scenes
from semibook.data.fashion_mnist import load_fashion_mnist
from semibook.data.scenes import (IGNORE_INDEX, ON_THRESHOLD, SCENE_CLASSES, V1, V2, Layer,
                                  compose, draw_layers, generate_scene, load_scenes,
                                  make_background, make_scenes, scenes_from)
from semibook.data.sources import cache_dir


@pytest.fixture(scope="module")
def fake_source(fake_fashion):
    (x_tr, y_tr, x_te, y_te), _ = load_fashion_mnist(str(fake_fashion), False)
    return x_tr[:, 0].numpy(), y_tr.numpy(), x_te[:, 0].numpy(), y_te.numpy()


def reference(background, layers):
    """The label rule written out pixel by pixel: the topmost layer that is "on" wins."""
    _, height, width = background.shape
    image = background.astype(np.float64).copy()
    mask = np.zeros((height, width), dtype=np.uint8)
    for r in range(height):
        for c in range(width):
            for layer in reversed(layers):
                i, j = r - layer.top, c - layer.left
                h, w = layer.intensity.shape
                if 0 <= i < h and 0 <= j < w and layer.intensity[i, j] > ON_THRESHOLD:
                    mask[r, c] = layer.label
                    image[:, r, c] = layer.intensity[i, j] * np.asarray(layer.colour)
                    break
    return np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8), mask


def test_classes_and_constants():
    from semibook.data import dataset_info
    from semibook.data.fashion_mnist import FASHION_CLASSES
    assert SCENE_CLASSES == V2.classes == ("background", "top", "trouser", "footwear", "bag")
    assert len(V1.classes) == 11 and V1.classes[0] == "background"
    assert V1.classes[1] == "T-shirt/top" and V1.classes[10] == "Ankle boot"
    # the merged classes: each Fashion-MNIST class goes to the kind its name says
    kinds = {"top": {"T-shirt/top", "Pullover", "Dress", "Coat", "Shirt"}, "trouser": {"Trouser"},
             "footwear": {"Sandal", "Sneaker", "Ankle boot"}, "bag": {"Bag"}}
    for c, name in enumerate(FASHION_CLASSES):
        assert name in kinds[V2.classes[V2.label_of[c]]]
        assert V1.classes[V1.label_of[c]] == name
    assert IGNORE_INDEX == 255 and IGNORE_INDEX >= len(V1.classes)
    assert scenes.TRAIN_SCENES == 10000 and scenes.VAL_SCENES == 1000
    assert dataset_info("fashion-scenes").classes == V2.classes
    assert dataset_info("fashion-scenes-v1").classes == V1.classes
    with pytest.raises(ConfigError, match="v1, v2"):
        scenes.variant_of("v3")


def test_shapes_dtypes_and_labels(fake_fashion):
    images, masks = make_scenes("train", 8, root=str(fake_fashion))
    assert images.shape == (8, 3, 64, 64) and images.dtype == torch.uint8
    assert masks.shape == (8, 64, 64) and masks.dtype == torch.uint8
    assert int(masks.max()) <= 4
    for m in masks:
        labels = set(m.unique().tolist())
        assert 0 in labels  # background is visible
        assert 1 <= len(labels - {0}) <= 3  # at least one item, never more than three
    _, masks = make_scenes("train", 8, root=str(fake_fashion), variant="v1")
    assert int(masks.max()) <= 10
    images, masks = make_scenes("val", 2, size=40, root=str(fake_fashion))
    assert images.shape == (2, 3, 40, 40) and masks.shape == (2, 40, 40)


@pytest.mark.parametrize("variant, items, sides", [(V1, {2, 3, 4}, (22, 45)),
                                                   (V2, {1, 2, 3}, (34, 56))])
def test_items_per_scene_their_size_and_labels_come_from_them(fake_source, variant, items, sides):
    x, y, _, _ = fake_source
    counts = set()
    for i in range(30):
        rng = np.random.default_rng([0, 0, i])
        make_background(rng, 64)
        layers = draw_layers(x, y, rng, 64, variant)
        counts.add(len(layers))
        _, mask = generate_scene(x, y, np.random.default_rng([0, 0, i]), variant=variant)
        assert set(np.unique(mask).tolist()) - {0} <= {layer.label for layer in layers}
        for layer in layers:
            h, w = layer.intensity.shape
            assert sides[0] <= h <= sides[1] and w == h  # 28 x scale
            # at least three quarters of each side lies inside the frame
            assert min(layer.top + h, 64) - max(layer.top, 0) >= 0.75 * h - 1
            assert min(layer.left + w, 64) - max(layer.left, 0) >= 0.75 * w - 1
    assert counts <= items and len(counts) >= 2


def test_deterministic_from_seed_split_and_index(fake_fashion, fake_source):
    root = str(fake_fashion)
    img8, mask8 = make_scenes("train", 8, root=root)
    img4, mask4 = make_scenes("train", 4, root=root)
    assert torch.equal(img8[:4], img4) and torch.equal(mask8[:4], mask4)
    again, again_m = make_scenes("train", 8, root=root)
    assert torch.equal(img8, again) and torch.equal(mask8, again_m)
    x, y, x_te, y_te = fake_source
    image3, mask3 = generate_scene(x, y, np.random.default_rng([0, 0, 3]))
    assert np.array_equal(image3, img8[3].numpy()) and np.array_equal(mask3, mask8[3].numpy())
    other, _ = make_scenes("train", 8, seed=1, root=root)
    assert not torch.equal(img8, other)
    val, val_m = make_scenes("val", 8, root=root)
    assert not torch.equal(img8, val)
    # validation scenes draw their items from the test images
    ref, ref_m = scenes_from(x_te, y_te, "val", 8)
    assert torch.equal(val, ref) and torch.equal(val_m, ref_m)


def test_compose_label_rule_on_a_constructed_case():
    size = 40
    background = np.full((3, size, size), 0.2)
    a = np.full((28, 28), 0.1)  # dim surround: never "on"
    a[4:24, 4:24] = 1.0  # a bright square
    b = np.zeros((28, 28))
    b[:, 10:18] = 0.8  # a vertical bar
    b[0:3, 10:18] = 0.2  # just below the threshold: transparent
    red, blue = np.array([0.9, 0.3, 0.1]), np.array([0.1, 0.4, 0.9])
    layers = [Layer(a, red, 2, 2, 3),  # square on rows 6..25, cols 6..25
              Layer(b, blue, 10, 10, 8),  # bar on rows 13..37, cols 20..27: covers a's corner
              Layer(b, blue, -5, -12, 5)]  # clipped at the top-left: rows 0..22, cols 0..5
    image, mask = compose(background, layers)
    ref_image, ref_mask = reference(background, layers)
    assert np.array_equal(mask, ref_mask) and np.array_equal(image, ref_image)
    assert (mask == 3).sum() == 20 * 20 - 13 * 6  # the square, less the part under the bar
    assert (mask[13:38, 20:28] == 8).all()  # the later item's on-pixels win
    assert (mask[10:13, 20:26] == 3).all()  # b's dim top rows are transparent: a shows
    assert (mask[10:13, 26:28] == 0).all() and (mask[38:, :] == 0).all()
    assert (mask[0:23, 0:6] == 5).all() and (mask[23:, 0:6] == 0).all()
    assert (mask[0:6, 6:] == 0).all()  # a's dim surround is transparent
    img = image.astype(np.float64)
    for label, colour in ((3, red), (8, blue), (5, blue)):
        pix = img[:, mask == label]
        cosine = colour @ pix / (np.linalg.norm(colour) * np.linalg.norm(pix, axis=0))
        assert cosine.min() > 0.999  # labelled pixels show that item's tint
    assert (image[:, mask == 0] == 51).all()  # background pixels untouched (0.2 * 255)


def test_generated_scenes_follow_the_label_rule(fake_source):
    x, y, _, _ = fake_source
    for i in range(3):
        rng = np.random.default_rng([7, 1, i])
        background = make_background(rng, 48)
        layers = draw_layers(x, y, rng, 48)
        image, mask = generate_scene(x, y, np.random.default_rng([7, 1, i]), size=48)
        ref_image, ref_mask = reference(background, layers)
        assert np.array_equal(mask, ref_mask)
        assert np.abs(image.astype(int) - ref_image.astype(int)).max() <= 1
        # background pixels are not "on" for any item
        for layer in layers:
            h, w = layer.intensity.shape
            r0, c0 = max(layer.top, 0), max(layer.left, 0)
            r1, c1 = min(layer.top + h, 48), min(layer.left + w, 48)
            part = layer.intensity[r0 - layer.top:r1 - layer.top, c0 - layer.left:c1 - layer.left]
            assert not (part[mask[r0:r1, c0:c1] == 0] > ON_THRESHOLD).any()


def test_background_is_textured_and_coloured():
    for i in range(5):
        bg = make_background(np.random.default_rng(i), 64)
        assert bg.shape == (3, 64, 64) and bg.min() >= 0 and bg.max() <= 1
        assert bg.std(axis=(1, 2)).min() > 0.02  # not flat
        # local differences (the weave and the grain) are there, not just a slow gradient
        assert np.abs(np.diff(bg, axis=2)).mean() > 0.02


def test_load_scenes_caches_one_npz(fake_fashion, monkeypatch):
    root = str(fake_fashion)
    images, masks = load_scenes("train", 6, root=root)
    files = list((cache_dir() / "scenes").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"
    name = files[0].name
    assert "train" in name and "n6" in name and "s64" in name and "seed0" in name and "-v2-" in name

    def boom(*args, **kwargs):
        raise AssertionError("regenerated instead of reading the cache")

    monkeypatch.setattr(scenes, "make_scenes", boom)
    cached, cached_m = load_scenes("train", 6, root=root)
    assert torch.equal(images, cached) and torch.equal(masks, cached_m)
    assert cached.dtype == torch.uint8 and cached_m.dtype == torch.uint8
    with pytest.raises(AssertionError, match="regenerated"):
        load_scenes("train", 6, seed=1, root=root)  # another key: not in the cache
    monkeypatch.undo()
    fresh, fresh_m = make_scenes("train", 6, root=root)
    assert torch.equal(fresh, cached) and torch.equal(fresh_m, cached_m)


def test_damaged_cache_file_is_regenerated(fake_fashion):
    root = str(fake_fashion)
    images, _ = load_scenes("val", 3, size=32, root=root)
    (path,) = (cache_dir() / "scenes").iterdir()
    path.write_bytes(b"not a zip")
    again, _ = load_scenes("val", 3, size=32, root=root)
    assert torch.equal(images, again)
    assert [p.name for p in (cache_dir() / "scenes").iterdir()] == [path.name]


@pytest.mark.parametrize("kwargs, words", [
    (dict(split="test", n=4), "train, val"),
    (dict(split="train", n=0), "positive"),
    (dict(split="val", n=-3), "positive"),
    (dict(split="train", n=4, size=16), ">= 32"),
    (dict(split="train", n=4, seed=-1), "seed"),
])
def test_bad_arguments_raise_config_error(fake_fashion, kwargs, words):
    for fn in (make_scenes, load_scenes):
        with pytest.raises(ConfigError, match=words):
            fn(root=str(fake_fashion), **kwargs)


def test_the_book_scenes_draw_each_kind_equally_often_the_first_ones_each_picture(fake_source):
    x, y, _, _ = fake_source
    kinds = {V1.name: [], V2.name: []}
    for v in (V1, V2):
        for i in range(300):
            rng = np.random.default_rng([0, 0, i])
            make_background(rng, 64)
            kinds[v.name] += [layer.label for layer in draw_layers(x, y, rng, 64, v)]
    share = np.bincount(kinds["v2"], minlength=5)[1:] / len(kinds["v2"])
    assert np.abs(share - 0.25).max() < 0.06, share  # four kinds, a quarter each
    # the first scenes draw pictures uniformly: a kind as common as its source pictures
    expect = np.bincount(y, minlength=10) / len(y)
    got = np.bincount(kinds["v1"], minlength=11)[1:] / len(kinds["v1"])
    assert np.abs(got - expect).max() < 0.06
