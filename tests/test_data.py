import json
import numpy as np
import pytest
import torch

from semibook.config import ConfigError
from semibook.data import DataNotFoundError, load_dataset
from semibook.data import fashion_mnist
from semibook.data.splits import load_or_make_split, make_split, read_split, split_path
from semibook.data.transforms import pad_crop_flip


def test_fashion_mnist_loads_from_an_explicit_root(fake_fashion):
    d = load_dataset("fashion-mnist", str(fake_fashion))
    assert d.x_train.shape == (400, 1, 28, 28) and d.x_train.dtype == torch.uint8
    assert d.x_test.shape == (200, 1, 28, 28)
    assert sorted(d.y_train.unique().tolist()) == list(range(10))
    assert d.source == str(fake_fashion)


def test_search_order_root_then_env_then_system(fake_fashion, tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "nowhere")
    monkeypatch.setenv("SEMIBOOK_DATA", str(fake_fashion))
    assert load_dataset("fashion-mnist").source == str(fake_fashion)
    monkeypatch.delenv("SEMIBOOK_DATA")
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", fake_fashion)
    assert load_dataset("fashion-mnist").source == str(fake_fashion)


def test_missing_data_names_every_place_tried(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setenv("SEMIBOOK_DATA", str(tmp_path / "env"))
    with pytest.raises(DataNotFoundError) as e:
        load_dataset("fashion-mnist")
    msg = str(e.value)
    assert "\n" not in msg
    for place in ("env", "system", "download"):
        assert place in msg
    assert "apt-get install dataset-fashion-mnist" in msg


def test_an_explicit_root_is_the_only_place_looked_at(fake_fashion, tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", fake_fashion)  # data elsewhere: not used
    monkeypatch.setenv("SEMIBOOK_DATA", str(fake_fashion))
    with pytest.raises(DataNotFoundError, match=r"root .*typo does not exist"):
        load_dataset("fashion-mnist", str(tmp_path / "typo"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match=r"root .*empty does not hold it"):
        load_dataset("fashion-mnist", str(tmp_path / "empty"))


def test_truncated_idx_file_is_a_clear_error(fake_fashion, tmp_path):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(fake_fashion, bad)
    raw = fashion_mnist.read_idx(bad / "train-labels-idx1-ubyte.gz")
    from tests.conftest import write_idx
    write_idx(bad / "train-labels-idx1-ubyte.gz", raw)
    import gzip
    data = gzip.open(bad / "train-labels-idx1-ubyte.gz").read()[:-7]
    with gzip.open(bad / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(data)
    with pytest.raises(ConfigError, match="truncated"):
        load_dataset("fashion-mnist", str(bad))


def test_cifar10_reads_torchvision_layout(fake_cifar):
    d = load_dataset("cifar10", str(fake_cifar))
    assert d.x_train.shape == (150, 3, 32, 32) and d.x_test.shape == (30, 3, 32, 32)
    assert d.y_train[:30].tolist() == np.repeat(np.arange(10), 3).tolist()
    # the class pattern survives the (N, 3072) -> (N, 3, 32, 32) reshape: bar rows 2c..2c+1
    c = int(d.y_train[0])
    assert (d.x_train[0, :, 2 + 2 * c, 4:28] == 220).all()


def test_cifar10_missing_is_a_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        load_dataset("cifar10", str(tmp_path))


def test_split_is_class_balanced_disjoint_and_complete():
    y = np.repeat(np.arange(10), 50)
    s = make_split(y, 40, seed=3, num_classes=10)
    assert np.bincount(y[s.labeled], minlength=10).tolist() == [4] * 10
    assert not set(s.labeled) & set(s.unlabeled)
    assert sorted(set(s.labeled) | set(s.unlabeled)) == list(range(500))


def test_split_files_are_deterministic_and_seed_dependent(tmp_path):
    y = torch.as_tensor(np.random.default_rng(0).integers(0, 10, 1000))
    a = load_or_make_split("d", y, 50, 0, 10, tmp_path / "a")
    b = load_or_make_split("d", y, 50, 0, 10, tmp_path / "b")
    c = load_or_make_split("d", y, 50, 1, 10, tmp_path / "c")
    assert a.path.read_bytes() == b.path.read_bytes() and a.sha256 == b.sha256
    assert not np.array_equal(a.labeled, c.labeled)
    again = read_split(split_path("d", 50, 0, tmp_path / "a"), y, 10)  # read back, not redrawn
    assert np.array_equal(again.labeled, a.labeled) and again.sha256 == a.sha256


def test_split_file_that_is_not_balanced_is_refused(tmp_path):
    y = np.arange(100) % 10
    p = tmp_path / "s.json"
    p.write_text('{"labeled": [0, 10, 1], "train_size": 100}')  # classes 0, 0, 1
    with pytest.raises(ConfigError, match="class-balanced"):
        read_split(p, y, 10)


def test_split_refuses_more_labels_per_class_than_exist():
    with pytest.raises(ConfigError):
        make_split(np.repeat(np.arange(10), 3), 40, 0, 10)


def test_pad_crop_flip_shifts_content_by_the_drawn_offset():
    x = torch.zeros(64, 1, 8, 8)
    x[:, 0, 3, 3] = 1.0  # one bright pixel that reflect-padding by 2 does not mirror
    out = pad_crop_flip(x, torch.Generator().manual_seed(0), pad=2, flip=False)
    ys, xs = torch.nonzero(out[:, 0] == 1, as_tuple=True)[1:]
    assert out.shape == x.shape and (out[:, 0] == 1).sum() == 64  # pixel kept, never cropped
    assert set((ys - 3).tolist()) <= set(range(-2, 3)) and set((xs - 3).tolist()) <= set(range(-2, 3))
    assert len(set(zip(ys.tolist(), xs.tolist()))) > 5  # offsets vary across the batch
    again = pad_crop_flip(x, torch.Generator().manual_seed(0), pad=2, flip=False)
    assert torch.equal(out, again)  # a function of the generator


def test_pad_zero_with_flip_only_mirrors():
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).view(2, 1, 2, 3).repeat(32, 1, 1, 1)
    out = pad_crop_flip(x, torch.Generator().manual_seed(1), pad=0, flip=True)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    same = (out == x).flatten(1).all(1)
    assert (flipped | same).all() and flipped.any() and same.any()


def test_constant_padding_fills_with_black_not_with_a_mirror_image():
    x = torch.ones(64, 1, 8, 8)
    out = pad_crop_flip(x, torch.Generator().manual_seed(2), pad=2, flip=False, mode="constant")
    blank = (out == 0).flatten(1).sum(1)
    shifted = torch.tensor([not torch.equal(o, x[0]) for o in out])
    assert torch.equal(blank > 0, shifted)  # a shifted image shows black where the pad shows
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    reflected = pad_crop_flip(x, torch.Generator().manual_seed(2), pad=2, flip=False)
    assert torch.equal(reflected, x)  # reflecting a constant image changes nothing


def test_validation_images_are_held_out_of_every_split_and_the_same_for_every_run(tmp_path):
    y = np.repeat(np.arange(10), 30)
    a = make_split(y, 20, 0, 10, validation=50)
    b = make_split(y, 40, 3, 10, validation=50)
    assert np.array_equal(a.held_out, b.held_out) and len(a.held_out) == 50
    assert np.bincount(y[a.held_out], minlength=10).tolist() == [5] * 10  # class-balanced
    for s in (a, b):
        assert not np.intersect1d(s.held_out, s.labeled).size
        assert not np.intersect1d(s.held_out, s.unlabeled).size
        assert sorted(np.concatenate([s.held_out, s.labeled, s.unlabeled])) == list(range(300))
    # without validation the draw is what it always was; the file says which images are out
    assert np.array_equal(make_split(y, 20, 0, 10).labeled,
                          make_split(y, 20, 0, 10, validation=0).labeled)
    s = load_or_make_split("d", y, 20, 0, 10, tmp_path, validation=50)
    assert s.path.name == "d_20_seed0_val50.json"
    back = read_split(s.path, y, 10)
    assert np.array_equal(back.held_out, a.held_out)
    assert np.array_equal(back.unlabeled, a.unlabeled)
    seg = make_split(np.zeros((300, 4, 4)), 16, 0, 11, balanced=False, validation=30)
    assert len(seg.held_out) == 30 and not np.intersect1d(seg.held_out, seg.labeled).size


def test_a_split_file_of_another_validation_set_stops_the_run(tmp_path):
    y = np.repeat(np.arange(10), 30)
    s = load_or_make_split("d", y, 20, 0, 10, tmp_path, validation=50)
    d = json.loads(s.path.read_text())
    d["held_out"] = d["held_out"][:-1] + [int(s.unlabeled[0])]
    s.path.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match="not the 50-image validation set"):
        load_or_make_split("d", y, 20, 0, 10, tmp_path, validation=50)


def test_a_tuning_run_evaluates_on_held_out_training_images_never_the_test_set(tiny):
    import torch
    import semibook as sb
    from semibook.engine.fit import prepare
    cfg = sb.make_config("mean_teacher", "fashion-mnist", 20, 0, "smoke", validation=100,
                         **tiny)
    tr, split = prepare(cfg, torch.device("cpu"))
    assert tr.eval_on == "validation" and len(split.held_out) == 100
    x_train = tr.image_set.x_train[torch.as_tensor(split.held_out)]
    assert torch.equal(tr.test_x, x_train)  # eval_size 0: every held-out image
    assert not set(split.held_out) & set(tr.track_index.tolist())
    assert tr.evaluate(1)["acc"] >= 0
