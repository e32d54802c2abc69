"""The methods' names as the chapters write them (the code's ids, such as ``cps_cutmix``, stay
in code, file names and tables' method columns)."""

from __future__ import annotations

METHOD_NAMES = {
    "supervised": "Supervised-only training", "mixmatch": "MixMatch",
    "mean_teacher": "Mean Teacher", "adversarial": "Adversarial training (Hung et al.)",
    "cps": "CPS", "cps_cutmix": "CPS with CutMix", "dual_teacher": "Dual Teacher",
    "soft_teacher": "Soft Teacher", "dual_branch": "The dual-branch network",
    "dual_branch_teacher": "The dual-branch teacher"}


def display_name(method: str, start: bool = True) -> str:
    """``method``'s name in prose; ``start=False``: inside a sentence (a leading article or
    common word in lower case). An unknown id is returned as it is."""
    name = METHOD_NAMES.get(method, method)
    if not start and name.split()[0] in ("The", "Supervised-only", "Adversarial"):
        name = name[0].lower() + name[1:]
    return name


def name_list(methods: list[str]) -> str:
    """Methods' names inside a sentence: "A", "A and B", "A, B and C"."""
    names = [display_name(m, start=False) for m in methods]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
