"""PASCAL VOC and Cityscapes loaders, their splits and per-sample transforms, on tiny fake
trees written here with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from semibook.config import ConfigError
from semibook.data import cityscapes, voc
from semibook.data.segfiles import strong_transform, weak_transform
from semibook.data.segsets import (id_from_token, make_fraction_split, read_id_list,
                                   read_id_split, split_count, write_id_list)
from semibook.data.sources import DataNotFoundError

W, H = 40, 30
VOC_TRAIN = [f"2007_{i:06d}" for i in range(1, 7)]
VOC_EXTRA = [f"2008_{i:06d}" for i in range(1, 5)]  # SBD-only ids of train_aug
VOC_VAL = [f"2009_{i:06d}" for i in range(1, 4)]


def _palette() -> list[int]:
    """VOC's colour map (bit-interleaved class index)."""
    pal = []
    for c in range(256):
        r = g = b = 0
        for k in range(8):
            r |= ((c >> 0) & 1) << (7 - k)
            g |= ((c >> 1) & 1) << (7 - k)
            b |= ((c >> 2) & 1) << (7 - k)
            c >>= 3
        pal += [r, g, b]
    return pal


def _voc_mask(seed: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[5:20, 8:30] = 1 + seed % 20
    m[5, 8:30] = 255  # a boundary line
    return m


def _save_palette(path: Path, mask: np.ndarray) -> None:
    im = Image.fromarray(mask, mode="P")
    im.putpalette(_palette())
    im.save(path)


def _save_rgb(path: Path, seed: int, size=(W, H)) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture
def fake_voc(tmp_path) -> Path:
    """VOCdevkit/VOC2012 with 6 train (+4 SBD-only) and 3 val ids; train ids 1..3 also have
    SegmentationClassAug masks that differ from their SegmentationClass ones."""
    root = tmp_path / "data" / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationClassAug",
                "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    for n, i in enumerate(VOC_TRAIN + VOC_EXTRA + VOC_VAL):
        _save_rgb(root / "JPEGImages" / f"{i}.jpg", n)
        if i not in VOC_EXTRA:
            _save_palette(root / "SegmentationClass" / f"{i}.png", _voc_mask(n))
        if i in VOC_TRAIN[:3] or i in VOC_EXTRA:  # plain index PNG, other class
            Image.fromarray(_voc_mask(n + 7), mode="L").save(
                root / "SegmentationClassAug" / f"{i}.png")
    sets = root / "ImageSets" / "Segmentation"
    (sets / "train.txt").write_text("\n".join(VOC_TRAIN) + "\n")
    (sets / "val.txt").write_text("\n".join(VOC_VAL) + "\n")
    return root


CITIES = {"train": {"aachen": 3, "bochum": 2}, "val": {"lindau": 2}}


def _city_mask(n: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)  # 0: unlabeled
    m[:10] = 7  # road
    m[10:15] = 8  # sidewalk
    m[15:20, :20] = 26  # car
    m[15:20, 20:] = 4 + n % 2  # static / dynamic: ignored
    m[20:, :10] = 23  # sky
    return m


@pytest.fixture
def fake_city(tmp_path) -> Path:
    root = tmp_path / "cityscapes"
    n = 0
    for split, cities in CITIES.items():
        for city, count in cities.items():
            (root / "leftImg8bit" / split / city).mkdir(parents=True)
            (root / "gtFine" / split / city).mkdir(parents=True)
            for k in range(count):
                stem = f"{city}_{k:06d}_{19 + k:06d}"
                _save_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", n)
                Image.fromarray(_city_mask(n), mode="L").save(
                    root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
                n += 1
    return root


# -- VOC ------------------------------------------------------------------------------------------

def test_voc_finds_files_and_reads_masks(fake_voc):
    root = voc.find_root(fake_voc.parents[1])  # the folder holding VOCdevkit/VOC2012
    assert root == fake_voc
    assert voc.list_ids(root, "train") == VOC_TRAIN  # no train_aug.txt: train.txt
    assert voc.list_ids(root, "val") == VOC_VAL
    ds = voc.load(root, "val")
    assert len(ds) == 3 and len(voc.VOC_CLASSES) == voc.NUM_CLASSES == 21
    x, y = ds[1]
    assert x.shape == (3, H, W) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    assert y.dtype == torch.int64 and y.shape == (H, W)
    n = len(VOC_TRAIN) + len(VOC_EXTRA) + 1
    assert torch.equal(y, torch.from_numpy(_voc_mask(n).astype(np.int64)))
    assert (y == 255).any() and set(y.unique().tolist()) <= set(range(21)) | {255}


def test_voc_prefers_aug_masks_for_train_ids(fake_voc):
    sets = fake_voc / "ImageSets" / "Segmentation"
    (sets / "train_aug.txt").write_text(
        "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n"
                for i in VOC_TRAIN + VOC_EXTRA))  # DeepLab's list format
    assert voc.list_ids(fake_voc, "train") == VOC_TRAIN + VOC_EXTRA
    assert voc.list_ids(fake_voc, "train_voc") == VOC_TRAIN
    p = dict(zip(VOC_TRAIN + VOC_EXTRA, voc.pairs(fake_voc, VOC_TRAIN + VOC_EXTRA, "train")))
    assert p[VOC_TRAIN[0]][1].parent.name == "SegmentationClassAug"
    assert p[VOC_TRAIN[4]][1].parent.name == "SegmentationClass"  # no Aug mask: falls back
    assert p[VOC_EXTRA[0]][1].parent.name == "SegmentationClassAug"
    _, y = voc.load(fake_voc, "train", ids=[VOC_TRAIN[0]])[0]
    assert torch.equal(y, torch.from_numpy(_voc_mask(7).astype(np.int64)))
    # val ids keep VOC's own masks even where an Aug mask exists
    Image.fromarray(_voc_mask(3), mode="L").save(fake_voc / "SegmentationClassAug" /
                                                 f"{VOC_VAL[0]}.png")
    assert voc.pairs(fake_voc, VOC_VAL[:1], "val")[0][1].parent.name == "SegmentationClass"
    # the classic protocol labels train.txt ids only; every other train id is unlabeled
    s = voc.make_split(fake_voc, 2, seed=0, protocol="classic")
    assert len(s.labeled) == 2 and set(s.labeled) <= set(VOC_TRAIN)
    assert sorted(s.labeled + s.unlabeled) == sorted(VOC_TRAIN + VOC_EXTRA)
    b = voc.make_split(fake_voc, "1/2", seed=0, protocol="blended")
    assert len(b.labeled) == 5 and not set(b.labeled) & set(b.unlabeled)


def test_voc_refuses_train_aug_holding_val_ids(fake_voc):
    (fake_voc / "ImageSets/Segmentation/train_aug.txt").write_text(
        "\n".join(VOC_TRAIN + VOC_VAL[:1]))
    with pytest.raises(ConfigError, match=r"train_aug\.txt: 1 ids are also validation"):
        voc.list_ids(fake_voc, "train")


def test_missing_root_names_the_places_tried(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError, match=r"SEMIBOOK_DATA is not set") as e:
        voc.find_root()
    assert "\n" not in str(e.value)
    monkeypatch.setenv("SEMIBOOK_DATA", str(tmp_path / "shared"))
    for module in (voc, cityscapes):
        with pytest.raises(DataNotFoundError) as e:
            module.load(tmp_path / "nowhere", "val")
        msg = str(e.value)
        assert "\n" not in msg
        assert f"data root {tmp_path / 'nowhere'} does not exist" in msg  # the only place tried
        with pytest.raises(DataNotFoundError) as e:
            module.load(None, "val")
        assert f"$SEMIBOOK_DATA {tmp_path / 'shared'}" in str(e.value)


def test_unknown_ids_and_bad_splits_are_refused(fake_voc):
    with pytest.raises(ConfigError, match=r"unknown VOC id '2099_000001'.*JPEGImages"):
        voc.pairs(fake_voc, ["2099_000001"], "train")
    with pytest.raises(ConfigError, match="unknown VOC split 'test'"):
        voc.list_ids(fake_voc, "test")


def test_voc_mask_with_unknown_value_names_the_file(fake_voc):
    bad = fake_voc / "SegmentationClass" / f"{VOC_VAL[0]}.png"
    m = _voc_mask(0)
    m[0, 0] = 30
    _save_palette(bad, m)
    with pytest.raises(ConfigError, match=r"values 30 outside the known ones \(0\.\.20, 255\)") as e:
        voc.load(fake_voc, "val")[0]
    assert str(bad) in str(e.value)


def test_size_mismatch_names_both_files(fake_voc):
    bad = fake_voc / "SegmentationClass" / f"{VOC_VAL[1]}.png"
    _save_palette(bad, np.zeros((20, 20), np.uint8))
    with pytest.raises(ConfigError, match=r"mask is 20x20 but its image .* is 40x30") as e:
        voc.load(fake_voc, "val")[1]
    assert str(bad) in str(e.value) and f"{VOC_VAL[1]}.jpg" in str(e.value)


def test_truncated_jpeg_names_the_file(fake_voc):
    path = fake_voc / "JPEGImages" / f"{VOC_VAL[2]}.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="cannot read image") as e:
        voc.load(fake_voc, "val")[2]
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_rgb_mask_is_refused(fake_voc):
    bad = fake_voc / "SegmentationClass" / f"{VOC_VAL[0]}.png"
    Image.new("RGB", (W, H)).save(bad)
    with pytest.raises(ConfigError, match="mask has mode RGB"):
        voc.load(fake_voc, "val")[0]


# -- Cityscapes -----------------------------------------------------------------------------------

def test_cityscapes_finds_files_and_maps_label_ids(fake_city):
    root = cityscapes.find_root(fake_city.parent)  # the folder holding cityscapes/
    assert root == fake_city
    train = cityscapes.list_ids(root, "train")
    assert len(train) == 5 and train[0] == "aachen_000000_000019" and train[-1].startswith("bochum")
    assert len(cityscapes.list_ids(root, "val")) == 2
    img, mask = cityscapes.pairs(root, train[:1], "train")[0]
    assert img.name == "aachen_000000_000019_leftImg8bit.png"
    assert mask.name == "aachen_000000_000019_gtFine_labelIds.png"
    x, y = cityscapes.load(root, "train")[0]
    assert x.shape == (3, H, W) and y.shape == (H, W) and y.dtype == torch.int64
    assert (y[:10] == 0).all()  # 7 road -> 0
    assert (y[10:15] == 1).all()  # 8 sidewalk -> 1
    assert (y[15:20, :20] == 13).all()  # 26 car -> 13
    assert (y[15:20, 20:] == 255).all()  # 4 static -> 255
    assert (y[20:, :10] == 10).all()  # 23 sky -> 10
    assert (y[20:, 10:] == 255).all()  # 0 unlabeled -> 255
    t = cityscapes.ID_TO_TRAINID
    assert sorted(v for v in t.values() if v != 255) == list(range(19))
    assert len(cityscapes.CITYSCAPES_CLASSES) == cityscapes.NUM_CLASSES == 19
    assert (t[7], t[8], t[26], t[0], t[24], t[33], t[9]) == (0, 1, 13, 255, 11, 18, 255)
    s = cityscapes.make_split(root, "1/2", seed=1)
    assert len(s.labeled) == 3 and sorted(s.labeled + s.unlabeled) == train


def test_cityscapes_unknown_label_id_names_the_file(fake_city):
    bad = next((fake_city / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    m = _city_mask(0)
    m[3, 3] = 40
    Image.fromarray(m, mode="L").save(bad)
    ds = cityscapes.load(fake_city, "val")
    with pytest.raises(ConfigError, match=r"values 40 outside the known ones \(0\.\.33\)") as e:
        [ds[i] for i in range(len(ds))]
    assert str(bad) in str(e.value)


def test_cityscapes_unknown_id(fake_city):
    with pytest.raises(ConfigError, match="unknown Cityscapes val id 'aachen_000000_000019'"):
        cityscapes.pairs(fake_city, ["aachen_000000_000019"], "val")


# -- splits ---------------------------------------------------------------------------------------

def test_fraction_splits_are_seeded_disjoint_complete_and_sized():
    ids = [f"id{i:03d}" for i in range(100)]
    a = make_fraction_split(ids, "1/16", seed=0)
    assert len(a.labeled) == 7  # ceil(100 / 16)
    assert a == make_fraction_split(list(reversed(ids)), 0.0625, seed=0)  # order-free
    assert a != make_fraction_split(ids, "1/16", seed=1)
    assert a.labeled == sorted(a.labeled) and a.unlabeled == sorted(a.unlabeled)
    assert not set(a.labeled) & set(a.unlabeled)
    assert sorted(a.labeled + a.unlabeled) == ids
    assert len(make_fraction_split(ids, 30, seed=0).labeled) == 30
    assert make_fraction_split(ids, 1.0, seed=0).unlabeled == []
    for bad in (0, 101, 0.0, 1.5, -0.25, "2/1", "half", True):
        with pytest.raises(ConfigError):
            make_fraction_split(ids, bad, seed=0)


def test_fractions_reproduce_the_published_counts():
    for frac, count in voc.VOC_FRACTIONS.items():
        assert split_count(voc.TRAIN_AUG_SIZE, frac) == count
    for frac, count in cityscapes.CITYSCAPES_FRACTIONS.items():
        assert split_count(cityscapes.TRAIN_SIZE, frac) == count
        assert split_count(cityscapes.TRAIN_SIZE, frac.replace("/", "_")) == count  # 1_16
    assert voc.VOC_SPLITS[-1] == voc.TRAIN_SIZE


def test_id_lists_round_trip_in_cps_and_unimatch_formats(tmp_path):
    ids = ["2007_000032", "2007_000039", "2008_000123"]
    path = write_id_list(tmp_path / "splits" / "labeled.txt", ids)
    assert path.read_text() == "2007_000032\n2007_000039\n2008_000123\n"
    assert read_id_list(path, known=ids + ["2009_000001"]) == ids
    line = ("leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png "
            "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png")
    (tmp_path / "city.txt").write_text(line + "\n\n" + line.replace("000019", "000020") + "\n")
    assert read_id_list(tmp_path / "city.txt") == ["aachen_000000_000019",
                                                   "aachen_000000_000020"]
    assert id_from_token("/JPEGImages/2007_000032.jpg") == "2007_000032"
    assert id_from_token("x/y_000001_000002_gtFine_labelTrainIds.png") == "y_000001_000002"


def test_unknown_ids_overlaps_and_repeats_are_refused(tmp_path):
    known = [f"2007_{i:06d}" for i in range(10)]
    lab = write_id_list(tmp_path / "labeled.txt", known[:3])
    unl = write_id_list(tmp_path / "unlabeled.txt", known[2:])
    with pytest.raises(ConfigError, match=r"unlabeled\.txt: 1 ids are also in the labeled "
                                          r"list .*labeled\.txt: 2007_000002"):
        read_id_split(lab, unl, known)
    s = read_id_split(lab, None, known)
    assert s.labeled == known[:3] and s.unlabeled == known[3:]
    (tmp_path / "odd.txt").write_text("2007_000001\n2099_000001\n")
    with pytest.raises(ConfigError, match=r"odd\.txt: 1 unknown ids .*2099_000001"):
        read_id_list(tmp_path / "odd.txt", known)
    (tmp_path / "twice.txt").write_text("2007_000001\n2007_000001\n")
    with pytest.raises(ConfigError, match=r"twice\.txt:2: id 2007_000001 appears twice"):
        read_id_list(tmp_path / "twice.txt")
    with pytest.raises(ConfigError, match=r"missing\.txt: cannot read id list"):
        read_id_list(tmp_path / "missing.txt")


# -- transforms -----------------------------------------------------------------------------------

def _encoded_pair(h=30, w=40, block=(6, 5)):
    """A mask of blocks of classes 0..19 (one block 255) and an image whose pixels spell the
    class: channel 0 = 10 * class + 5, so a misplaced image pixel reads as another class;
    channel 2 is a left-to-right ramp."""
    yy, xx = np.mgrid[:h, :w]
    by, bx = yy // block[0], xx // block[1]
    m = (by * 7 + bx) % 20
    m[(by == 1) & (bx == 2)] = 255
    img = np.stack([10 * (m % 20) + 5, np.full_like(m, 128), xx * 255 // w], 0).astype(np.uint8)
    return (tv_tensors.Image(torch.from_numpy(img)),
            tv_tensors.Mask(torch.from_numpy(m.astype(np.uint8))))


def _decoded(x):
    return ((x[0].float() - 5) / 10).round().long()


def test_weak_transform_keeps_image_and_mask_aligned():
    x, y = _encoded_pair()
    exact = weak_transform(24, scale=(1.0, 1.0))  # crop and flip only: exact agreement
    flips = 0
    for seed in range(6):
        torch.manual_seed(seed)
        xo, yo = exact(x, y)
        assert xo.shape == (3, 24, 24) and yo.shape == (24, 24)
        keep = yo != 255
        assert torch.equal(_decoded(xo)[keep], yo.long()[keep])
        flips += int(xo[2, 0, 0] > xo[2, 0, -1])  # the ramp runs backwards
    assert 0 < flips < 6
    # rescaled: bilinear blends image values along block borders, so compare inside blocks,
    # where the mask is one class over a 7x7 neighbourhood
    x, y = _encoded_pair(60, 80, block=(15, 20))
    scaled = weak_transform((40, 56), scale=(0.5, 2.0))
    checked = 0
    for seed in range(6):
        torch.manual_seed(seed)
        xo, yo = scaled(x, y)
        assert xo.shape == (3, 40, 56) and yo.shape == (40, 56)
        yf = yo.float()[None, None]
        hi = torch.nn.functional.max_pool2d(yf, 7, 1, 3)[0, 0]
        lo = -torch.nn.functional.max_pool2d(-yf, 7, 1, 3)[0, 0]
        inside = (hi == lo) & (yo != 255)
        assert torch.equal(_decoded(xo)[inside], yo.long()[inside])
        checked += int(inside.sum())
    assert checked > 1000


def test_weak_transform_pads_mask_with_ignore_and_image_with_zero():
    x, y = _encoded_pair()
    torch.manual_seed(0)
    xo, yo = weak_transform(32, scale=(0.5, 0.5))(x, tv_tensors.Mask(y.long()))  # 20x15 inside a 32x32 crop
    pad = torch.ones(32, 32, dtype=torch.bool)
    pad[:15, :20] = False
    pad = pad if xo[0, 0, 0] > 0 else pad.flip(1)  # flipped: the image sits top right
    assert (yo[pad] == 255).all() and (xo[:, pad] == 0).all()
    assert (yo[~pad] != 255).float().mean() > 0.8 and (xo[0, ~pad] > 0).all()


def test_strong_transform_changes_the_image_only():
    x, y = _encoded_pair()
    xf = tv_tensors.Image(x.float() / 255)
    strong = strong_transform()
    changed = 0
    for seed in range(4):
        torch.manual_seed(seed)
        xo, yo = strong(xf, y)
        assert torch.equal(yo, y) and isinstance(yo, tv_tensors.Mask)
        assert xo.shape == xf.shape and 0 <= xo.min() and xo.max() <= 1
        changed += int(not torch.allclose(xo, xf))
    assert changed > 0


def test_dataset_applies_transforms(fake_voc):
    weak, strong = weak_transform(16), strong_transform()
    ds = voc.load(fake_voc, "train", transform=lambda x, y: (*weak(x, y),))
    x, y = ds[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    two = voc.load(fake_voc, "train", transform=lambda x, y: (lambda a, b: (a, strong(a), b))(
        *weak(x, y)))
    x_w, x_s, y = two[0]
    assert x_w.shape == x_s.shape == (3, 16, 16) and 0 <= x_s.min() and x_s.max() <= 1
    assert y.shape == (16, 16) and set(y.unique().tolist()) <= set(range(21)) | {255}


# -- through the engine and the command line ------------------------------------------------------

@pytest.mark.parametrize("name", ["voc", "cityscapes"])
def test_file_datasets_train_through_the_engine(name, fake_voc, fake_city, tmp_path,
                                                monkeypatch):
    import dataclasses

    import semibook as sb
    import semibook.data as data
    from semibook.engine.fit import fit
    # a 24-pixel copy instead of the real size, so two steps take a second on the CPU
    monkeypatch.setitem(data._INFO, name, dataclasses.replace(data._INFO[name], size=24))
    root = fake_voc if name == "voc" else fake_city
    d = data.load_dataset(name, str(root))
    assert d.x_train.shape == (6 if name == "voc" else 5, 3, 24, 24)
    assert d.x_train.dtype == torch.uint8 and d.y_train.dtype == torch.long
    assert set(d.y_train.unique().tolist()) <= set(range(d.info.num_classes)) | {255}
    assert data.available(name, str(root)) and not data.available(name, str(tmp_path / "x"))
    cfg = sb.make_config("supervised", name, 2, 0, "smoke", data_root=str(root), steps=2,
                         eval_every=2, batch_l=2, eval_size=0, track_size=2)
    res = fit(cfg, tmp_path / "run", progress=False, device="cpu")
    ev = [r for r in res["history"] if r["kind"] == "eval"]
    assert res["finished"] and len(ev[-1]["iou"]) == d.info.num_classes
    assert res["split_file"].endswith(f"{name}_2_seed0.json")


def test_fixed_size_keeps_image_and_mask_aligned(fake_voc):
    from semibook.data.segfiles import fixed_size
    files = voc.load(fake_voc, "val")
    x, y = fixed_size(files, 60)  # 40 x 30 -> 80 x 60 -> centre 60 x 60
    assert x.shape == (3, 3, 60, 60) and y.shape == (3, 60, 60)
    # the object (rows 5..19, columns 8..29 of 30 x 40) scaled by 2, shifted left by 10
    m = y[0]
    rows, cols = (m != 0).nonzero(as_tuple=True)
    assert rows.min() == 10 and rows.max() == 39 and cols.min() == 6 and cols.max() == 49


def _cli(*args):
    import os
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-m", "semibook", "run", *args], cwd=root,
                          env=dict(os.environ), capture_output=True, text=True, timeout=300)


def test_cli_bad_segmentation_files_are_one_line(fake_voc, isolated):
    bad = fake_voc / "SegmentationClassAug" / f"{VOC_TRAIN[0]}.png"
    mask = np.array(Image.open(bad))
    mask[0, 0] = 77
    Image.fromarray(mask, mode="L").save(bad)
    r = _cli("--method", "supervised", "--dataset", "voc", "--labels", "2", "--profile",
             "smoke", "--data-root", str(fake_voc))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(bad) in lines[0] and "77" in lines[0] and "0..20, 255" in lines[0]
    assert not (isolated / "runs").exists() and not (isolated / "splits").exists()
    r = _cli("--method", "supervised", "--dataset", "voc", "--labels", "2", "--profile",
             "smoke", "--data-root", str(isolated / "nowhere"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "PASCAL VOC 2012 not found" in lines[0] and "nowhere does not exist" in lines[0]


def test_labeled_fraction_or_count_out_of_range_is_refused():
    for bad in ("0", "3/2", -1, 0, 11, "x/y", 1.5):
        with pytest.raises(ConfigError, match="labeled (count|fraction|amount)"):
            split_count(10, bad)
    assert split_count(10, "1/16") == 1 and split_count(10, 10) == 10


def test_search_with_no_place_to_look_says_so(monkeypatch):
    from semibook.data.sources import search
    with pytest.raises(DataNotFoundError, match=r"^Thing not found: no data root given and "
                                                r"\$SEMIBOOK_DATA is not set\. Get it\.$"):
        search("Thing", None, [], lambda p: None, None, None, "Get it.")


def test_paper_profile_without_weights_stops_with_one_line_and_writes_nothing(fake_voc, isolated,
                                                                              monkeypatch):
    import semibook as sb
    assert sb.make_config("cps", "voc", 4, 0, "paper").encoder_weights == "imagenet"
    assert sb.make_config("cps", "fashion-scenes", 50, 0, "full").encoder_weights is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(isolated / "hf"))
    r = _cli("--method", "cps", "--dataset", "voc", "--labels", "4", "--profile", "paper",
             "--data-root", str(fake_voc))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    from semibook.models.segmentation import PRESETS
    encoder = PRESETS[sb.make_config("cps", "voc", 4, 0, "paper").arch]["encoder"]  # tu-resnet50
    assert f"timm/{encoder.removeprefix('tu-')}" in lines[0] and "--weights PATH" in lines[0]
    assert not (isolated / "runs").exists() and not (isolated / "splits").exists()
