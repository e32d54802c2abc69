"""PASCAL VOC 2012 segmentation with the SBD-augmented training set (the "aug" set).

21 classes (background and 20 objects); 255 marks object boundaries and "difficult" pixels,
which are not scored. The layout is the one CPS and UniMatch use::

    <root>/JPEGImages/<id>.jpg
    <root>/SegmentationClass/<id>.png       VOC's own masks (palette PNGs of class indices)
    <root>/SegmentationClassAug/<id>.png    the SBD-augmented masks (plain index PNGs), optional
    <root>/ImageSets/Segmentation/train.txt       1,464 ids
    <root>/ImageSets/Segmentation/val.txt         1,449 ids
    <root>/ImageSets/Segmentation/train_aug.txt   10,582 ids, optional

Splits (``list_ids``): ``train`` is the 10,582 augmented ids when ``train_aug.txt`` exists and
the 1,464 of ``train.txt`` otherwise; ``train_voc`` is always the 1,464 finely annotated ids;
``val`` is the 1,449 validation ids. Two label protocols are in use: "classic", whose labeled
images (92 ... 1,464) come from ``train_voc`` and the unlabeled ones are the rest of the 10,582,
and "blended", whose 1/16 ... 1/2 are drawn from all 10,582 (see :func:`make_split`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from ..checks import ConfigError, choose
from .segsets import find_root as find_dataset_root
from .segsets import IdSplit, make_fraction_split, make_label_map, read_id_list

if TYPE_CHECKING:
    from .segfiles import SegmentationFiles

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")
NUM_CLASSES = 21
IGNORE_INDEX = 255
TRAIN_SIZE, TRAIN_AUG_SIZE, VAL_SIZE = 1464, 10582, 1449
# labeled counts of the classic protocol (labeled images from the 1,464 of train.txt)
VOC_SPLITS = (92, 183, 366, 732, 1464)
# the blended protocol: fractions of the 10,582 augmented ids and their labeled counts
VOC_FRACTIONS = {"1/16": 662, "1/8": 1323, "1/4": 2646, "1/2": 5291}
SPLITS = ("train", "train_voc", "val")
PROTOCOLS = ("classic", "blended")

LABEL_MAP = make_label_map({**{c: c for c in range(NUM_CLASSES)}, IGNORE_INDEX: IGNORE_INDEX})
# where a data folder may hold the VOC2012 folder
SUBFOLDERS = ("", "VOC2012", "VOCdevkit/VOC2012", "voc", "VOCdevkit/VOC2012_aug")
HOW_TO_GET = ("Download VOCtrainval_11-May-2012.tar from the PASCAL VOC site and, for the "
              "10,582-image training set, the SBD-augmented masks (SegmentationClassAug) and "
              "train_aug.txt; pass the VOC2012 folder (JPEGImages, SegmentationClass, "
              "ImageSets/Segmentation) as the data root or put it under $SEMIBOOK_DATA.")


def _is_root(folder: Path) -> bool:
    return ((folder / "JPEGImages").is_dir() and (folder / "ImageSets" / "Segmentation").is_dir()
            and ((folder / "SegmentationClass").is_dir()
                 or (folder / "SegmentationClassAug").is_dir()))


def find_root(root: str | Path | None = None) -> Path:
    """The VOC2012 folder: ``root`` (or a folder holding it), else ``$SEMIBOOK_DATA``."""
    return find_dataset_root("PASCAL VOC 2012", root, _is_root, SUBFOLDERS, HOW_TO_GET)


def list_ids(root: str | Path | None, split: str) -> list[str]:
    """The ids of ``split`` (``train``, ``train_voc`` or ``val``) in file order."""
    choose("VOC split", split, SPLITS)
    root = find_root(root)
    sets = root / "ImageSets" / "Segmentation"
    if split == "val":
        return _ids_file(sets / "val.txt")
    if split == "train" and (sets / "train_aug.txt").is_file():
        ids = _ids_file(sets / "train_aug.txt")
        if (sets / "val.txt").is_file():
            both = set(ids) & set(_ids_file(sets / "val.txt"))
            if both:
                raise ConfigError(f"{sets / 'train_aug.txt'}: {len(both)} ids are also "
                                  f"validation ids (e.g. {sorted(both)[0]}); the augmented "
                                  f"training list must exclude val.txt")
        return ids
    return _ids_file(sets / "train.txt")


def _ids_file(path: Path) -> list[str]:
    if not path.is_file():
        raise ConfigError(f"{path}: id list not found")
    return read_id_list(path)


def pairs(root: str | Path | None, ids: Iterable[str], split: str) -> list[tuple[Path, Path]]:
    """(image, mask) paths of ``ids``. Training ids take the SBD-augmented mask when there is
    one, validation ids VOC's own mask (either falls back to the other)."""
    choose("VOC split", split, SPLITS)
    root = find_root(root)
    folders = ["SegmentationClassAug", "SegmentationClass"]
    if split == "val":
        folders.reverse()
    out = []
    for i in ids:
        image = root / "JPEGImages" / f"{i}.jpg"
        if not image.is_file():
            raise ConfigError(f"unknown VOC id {i!r}: {image} does not exist")
        masks = [root / f / f"{i}.png" for f in folders]
        mask = next((m for m in masks if m.is_file()), None)
        if mask is None:
            raise ConfigError(f"no mask for VOC id {i!r}: neither {masks[0]} nor {masks[1]} "
                              f"exists")
        out.append((image, mask))
    return out


def load(root: str | Path | None = None, split: str = "train",
         transform: Callable | None = None, ids: Iterable[str] | None = None
         ) -> SegmentationFiles:
    """The ``split`` (or the given ``ids`` of it) as a :class:`SegmentationFiles` dataset."""
    from .segfiles import SegmentationFiles  # torchvision: imported where files are read
    root = find_root(root)
    ids = list_ids(root, split) if ids is None else list(ids)
    return SegmentationFiles(pairs(root, ids, split), transform, label_map=LABEL_MAP)


def make_split(root: str | Path | None, labels, seed: int, protocol: str = "classic") -> IdSplit:
    """Labeled and unlabeled training ids. ``classic``: ``labels`` (a count such as 92, or a
    fraction) of the 1,464 finely annotated ids; ``blended``: of all training ids. The
    unlabeled ids are every other training id in both."""
    choose("VOC protocol", protocol, PROTOCOLS)
    train = list_ids(root, "train")
    pool = list_ids(root, "train_voc") if protocol == "classic" else None
    return make_fraction_split(train, labels, seed, pool=pool)
