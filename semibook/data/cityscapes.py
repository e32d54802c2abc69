"""Cityscapes with its fine annotations: 2,975 training and 500 validation street scenes.

Layout (as unzipped from leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip)::

    <root>/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

An id is ``<city>_<seq>_<frame>``, e.g. ``aachen_000000_000019``. The masks store the 34
``labelIds`` (0..33); the 19 evaluated classes are the official ``trainId`` s, read through
:data:`ID_TO_TRAINID`, and every other id becomes 255 (not scored). Semi-supervised splits
label 1/16 ... 1/2 of the training ids (186 ... 1,488, as in CPS).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from ..checks import ConfigError, choose
from .segsets import find_root as find_dataset_root
from .segsets import IdSplit, make_fraction_split, make_label_map

if TYPE_CHECKING:
    from .segfiles import SegmentationFiles

CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                      "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
                      "truck", "bus", "train", "motorcycle", "bicycle")
NUM_CLASSES = 19
IGNORE_INDEX = 255
TRAIN_SIZE, VAL_SIZE = 2975, 500
CITYSCAPES_FRACTIONS = {"1/16": 186, "1/8": 372, "1/4": 744, "1/2": 1488}
SPLITS = ("train", "val")

_I = IGNORE_INDEX
# the official labelId -> trainId table (cityscapesScripts' labels.py); license plate (-1) is
# never written into labelIds images
ID_TO_TRAINID = {
    0: _I, 1: _I, 2: _I, 3: _I, 4: _I, 5: _I, 6: _I,  # unlabeled, ego vehicle, ..., ground
    7: 0, 8: 1, 9: _I, 10: _I,  # road, sidewalk, parking, rail track
    11: 2, 12: 3, 13: 4, 14: _I, 15: _I, 16: _I,  # building, wall, fence, guard rail, bridge, tunnel
    17: 5, 18: _I, 19: 6, 20: 7,  # pole, polegroup, traffic light, traffic sign
    21: 8, 22: 9, 23: 10,  # vegetation, terrain, sky
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15,  # person, rider, car, truck, bus
    29: _I, 30: _I, 31: 16, 32: 17, 33: 18,  # caravan, trailer, train, motorcycle, bicycle
}
LABEL_MAP = make_label_map(ID_TO_TRAINID)
SUBFOLDERS = ("", "cityscapes", "Cityscapes")
IMAGE_SUFFIX, MASK_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png"
HOW_TO_GET = ("Cityscapes needs a (free) registration at cityscapes-dataset.com: download "
              "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, unzip both into one "
              "folder (it then holds leftImg8bit/ and gtFine/) and pass it as the data root or "
              "put it under $SEMIBOOK_DATA.")


def _is_root(folder: Path) -> bool:
    return (folder / "leftImg8bit").is_dir() and (folder / "gtFine").is_dir()


def find_root(root: str | Path | None = None) -> Path:
    """The folder holding leftImg8bit/ and gtFine/: ``root`` (or a folder holding it), else
    ``$SEMIBOOK_DATA``."""
    return find_dataset_root("Cityscapes", root, _is_root, SUBFOLDERS, HOW_TO_GET)


def list_ids(root: str | Path | None, split: str) -> list[str]:
    """The sorted ids of ``split`` (``train`` or ``val``), from the image files."""
    choose("Cityscapes split", split, SPLITS)
    folder = find_root(root) / "leftImg8bit" / split
    if not folder.is_dir():
        raise ConfigError(f"{folder}: folder not found")
    ids = sorted(p.name[: -len(IMAGE_SUFFIX)] for p in folder.glob(f"*/*{IMAGE_SUFFIX}"))
    if not ids:
        raise ConfigError(f"{folder}: no <city>/*{IMAGE_SUFFIX} images")
    return ids


def pairs(root: str | Path | None, ids: Iterable[str], split: str) -> list[tuple[Path, Path]]:
    """(image, labelIds mask) paths of ``ids``."""
    choose("Cityscapes split", split, SPLITS)
    root = find_root(root)
    out = []
    for i in ids:
        city = i.split("_", 1)[0]
        image = root / "leftImg8bit" / split / city / f"{i}{IMAGE_SUFFIX}"
        if not image.is_file():
            raise ConfigError(f"unknown Cityscapes {split} id {i!r}: {image} does not exist")
        mask = root / "gtFine" / split / city / f"{i}{MASK_SUFFIX}"
        if not mask.is_file():
            raise ConfigError(f"no mask for Cityscapes id {i!r}: {mask} does not exist")
        out.append((image, mask))
    return out


def load(root: str | Path | None = None, split: str = "train",
         transform: Callable | None = None, ids: Iterable[str] | None = None
         ) -> SegmentationFiles:
    """The ``split`` (or the given ``ids`` of it) as a :class:`SegmentationFiles` dataset whose
    masks hold trainIds (0..18, 255)."""
    from .segfiles import SegmentationFiles  # torchvision: imported where files are read
    root = find_root(root)
    ids = list_ids(root, split) if ids is None else list(ids)
    return SegmentationFiles(pairs(root, ids, split), transform, label_map=LABEL_MAP)


def make_split(root: str | Path | None, labels, seed: int) -> IdSplit:
    """Labeled (a fraction such as ``"1/16"``, or a count) and unlabeled training ids."""
    return make_fraction_split(list_ids(root, "train"), labels, seed)
