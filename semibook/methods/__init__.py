"""Methods by name. One paper, one file; an unknown name lists the known ones."""

from __future__ import annotations

from ..checks import choose
from .adversarial import Adversarial
from .base import Batch, DataSpec, SemiMethod
from .cps import CPS, CPSCutMix
from .dual_branch import DualBranch
from .dual_branch_teacher import DualBranchTeacher
from .dual_teacher import DualTeacher
from .mean_teacher import MeanTeacher
from .mixmatch import MixMatch
from .soft_teacher import SoftTeacher
from .supervised import Supervised

METHODS: dict[str, type[SemiMethod]] = {
    cls.name: cls for cls in (Supervised, MixMatch, MeanTeacher, Adversarial, CPS,
                              CPSCutMix, DualTeacher, SoftTeacher, DualBranch,
                              DualBranchTeacher)
}


def get_method_class(name: str) -> type[SemiMethod]:
    return METHODS[choose("method", name, METHODS)]


__all__ = ["METHODS", "Batch", "DataSpec", "SemiMethod", "get_method_class"]
