"""What the command line lists without importing torch: the methods with the tasks they have,
and the datasets with their task. ``tests/test_cli.py`` checks these against the registries."""

from __future__ import annotations

METHOD_TASKS: dict[str, tuple[str, ...]] = {
    "supervised": ("classification", "segmentation"),
    "mixmatch": ("classification",),
    "mean_teacher": ("classification", "segmentation"),
    "adversarial": ("segmentation",),
    "cps": ("segmentation",),
    "cps_cutmix": ("segmentation",),
    "dual_teacher": ("segmentation",),
    "soft_teacher": ("segmentation",),
    "dual_branch": ("segmentation",),
    "dual_branch_teacher": ("segmentation",),
}

DATASET_TASKS: dict[str, str] = {
    "fashion-mnist": "classification",
    "cifar10": "classification",
    "fashion-scenes": "segmentation",
    "fashion-scenes-v1": "segmentation",
    "voc": "segmentation",
    "cityscapes": "segmentation",
}


def methods_for(task: str) -> list[str]:
    return [m for m, tasks in METHOD_TASKS.items() if task in tasks]
