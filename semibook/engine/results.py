"""Results and provenance: the results file a finished run writes (config, split hash, code
commit, host, versions, history, best and last), reading results files back, and the one-line
provenance a chapter prints beside a result."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checks import ConfigError
from ..config import Config, is_semibook_config
from ..data.splits import Split
from ..paths import ROOT, results_dir
from .seed import device_name, host_info



def _code_commit() -> dict[str, Any]:
    """The commit of the code this process runs: read when this module was imported, so that
    a checkout or an edit made while a long process trains is not recorded as the code it
    ran."""
    return dict(_IMPORTED)


def _git_commit() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        # uncommitted changes to the package's code (not to notebooks, whose outputs change
        # whenever a chapter runs)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "semibook"], cwd=ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip() != ""
        return {"git_commit": commit or None, "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def _code_sha256() -> str:
    """The SHA-256 of the package's code: every ``.py`` file under ``semibook/``, by its path
    and bytes (what a commit alone does not say: edits not committed)."""
    h = hashlib.sha256()
    pkg = Path(__file__).resolve().parents[1]
    for f in sorted(pkg.rglob("*.py")):
        h.update(str(f.relative_to(pkg)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


_IMPORTED = {**_git_commit(), "code_sha256": _code_sha256()}  # see _code_commit


def check_segment(state: dict[str, Any], ckpt_path: Path, split: Split, now: dict[str, Any],
                   allow_code_change: bool) -> None:
    """Refuse to continue a checkpoint on another split file, or on other code unless
    allowed (checkpoints written before these were recorded are not checked)."""
    was = state.get("split_sha256")
    if was is not None and was != split.sha256:
        raise ConfigError(f"{split.path}: the split file has changed since this run's checkpoint "
                          f"(sha256 {was[:12]} then, {str(split.sha256)[:12]} now); the run "
                          f"cannot continue on another split: restore the file, or pass "
                          f"--overwrite to start the run again")
    was = state.get("code_sha256")
    if was is not None and was != now["code_sha256"] and not allow_code_change:
        raise ConfigError(f"{ckpt_path}: semibook's code has changed since this checkpoint (code "
                          f"sha256 {was[:12]} then, {now['code_sha256'][:12]} now); pass "
                          f"--allow-code-change to continue with today's code (the results "
                          f"file records both), or --overwrite to start again")


def code_segments(history: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The code of each segment, where a resume changed it (None where one code ran)."""
    segs = [r for r in history if r.get("kind") == "segment"]
    if len({r.get("code_sha256") for r in segs}) <= 1:
        return None
    return [{k: r.get(k) for k in ("step", "git_commit", "git_dirty", "code_sha256")}
            for r in segs]


def _versions() -> dict[str, str]:
    import torchvision
    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "numpy": np.__version__}


def config_diff(cfg: Config, old: dict[str, Any]) -> list[str]:
    """Fields in which ``cfg`` differs from a stored config (fields added to :class:`Config`
    since it was written take their defaults)."""
    if not isinstance(old, dict):
        return sorted(cfg.to_dict())
    try:
        old = Config.from_dict(old).to_dict()
    except (ConfigError, TypeError):
        pass
    return cfg.diff(old)


def curve_value(row: dict[str, Any], key: str) -> float:
    """An evaluation row's point on the run's curve of ``key``: with ``cfg.eval_subset`` the
    intermediate rows are scored on the fixed subset, and the last one on every image keeps
    its subset score as ``subset_<key>``, which is the point comparable with the others."""
    return row.get(f"subset_{key}", row[key])


def make_results(cfg: Config, history: list[dict], split: Split, device: torch.device,
                 started_at: str, elapsed: float, finished: bool,
                 metric: str = "acc", code: dict[str, Any] | None = None) -> dict[str, Any]:
    evals = [r for r in history if r["kind"] == "eval"]
    # with cfg.eval_subset, the curve's points are scored on the subset (the last one also on
    # every image): the best point is chosen among scores of the same images
    curve = lambda r: curve_value(r, metric)  # noqa: E731
    best = max(evals, key=curve) if evals else None
    return {
        "method": cfg.method, "dataset": cfg.dataset, "labels": cfg.labels, "seed": cfg.seed,
        "profile": cfg.profile, "overrides": overrides(cfg), "finished": finished,
        "config": cfg.to_dict(),
        "split_file": str(split.path.relative_to(ROOT)) if split.path and
        split.path.is_relative_to(ROOT) else str(split.path),
        "split_sha256": split.sha256, **(code or _code_commit()), "device": device_name(device),
        "host": host_info(), "versions": _versions(), "started_at": started_at,
        "elapsed_s": round(elapsed, 1),
        "history": history,
        "skipped_nonfinite": sum(r.get("skipped_nonfinite", 0) for r in history
                                 if r["kind"] == "train"),
        "metric": metric,
        "last": {k: evals[-1][k] for k in evals[-1] if k.startswith(metric)} | {
            "step": evals[-1]["step"]} if evals else None,
        "best": ({metric: curve(best), "step": best["step"]}
                 | ({"images": cfg.eval_subset} if "eval_images" in best else {})) if best else None,
    }


def overrides(cfg: Config) -> dict[str, Any]:
    """The fields in which ``cfg`` differs from what its profile gives (the caller's
    overrides)."""
    from ..config import make_config
    default = make_config(cfg.method, cfg.dataset, cfg.labels, cfg.seed, cfg.profile).to_dict()
    return {k: v for k, v in cfg.to_dict().items() if default.get(k) != v}


def result_name(cfg: Config) -> str:
    """``<dataset>_<labels>_<method>_seed<seed>_<profile>.json`` for a config of its profile;
    a config with overrides gets a name of its own (``..._<profile>-custom-<hash>.json``, the
    hash of its overrides), so it never replaces the profile's result."""
    name = f"{cfg.dataset}_{cfg.labels}_{cfg.method}_seed{cfg.seed}_{cfg.profile}"
    over = overrides(cfg)
    if over:
        digest = hashlib.sha256(json.dumps(over, sort_keys=True).encode()).hexdigest()[:10]
        name += f"-custom-{digest}"
    return name + ".json"


_TYPES = (("method", str), ("dataset", str), ("profile", str), ("labels", int), ("seed", int),
          ("finished", bool), ("history", list))
_warned: set[str] = set()


def results_problem(r: Any) -> str | None:
    """What keeps a parsed JSON file from being a results file of this schema (None: it is)."""
    if not isinstance(r, dict):
        return "not a JSON object"
    for k, t in _TYPES:
        if not isinstance(r.get(k), t) or (t is int and isinstance(r[k], bool)):
            return f"no {k}" if k not in r else f"its {k} is not a {t.__name__}"
    if not is_semibook_config(r.get("config")):
        return "no config that semibook wrote"
    return None


def read_results(f: Path) -> dict[str, Any] | None:
    """One results file; None (with a one-line warning on stderr, once per file) for a JSON
    file of another schema; one line (ConfigError) for a file that does not read as JSON."""
    try:
        r = json.loads(Path(f).read_text())
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        raise ConfigError(f"{f}: not a readable results file ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:100]}); restore it from git, or delete it "
                          f"(its run is then trained again)") from None
    problem = results_problem(r)
    if problem is None:
        return r
    if str(f) not in _warned:
        _warned.add(str(f))
        print(f"warning: {f}: not a semibook results file ({problem}); skipped",
              file=sys.stderr, flush=True)
    return None


def load_results(path: Path | str | None = None, **match: Any) -> list[dict[str, Any]]:
    """Results files under ``results/`` (or ``path``) whose fields equal ``match``; JSON files
    of another schema are skipped with a warning naming them."""
    base = Path(path) if path else results_dir()
    if path is None and not base.exists():  # no results folder yet: no results
        return []
    files = sorted(base.glob("*.json")) if base.is_dir() else [base]
    out = []
    for f in files:
        r = read_results(f)
        if r is not None and all(r.get(k) == v for k, v in match.items()):
            r["results_file"], r["loaded"] = str(f), True
            r["profile_changes"] = profile_changes(r)
            out.append(r)
    return out



def same_config(results: dict[str, Any], cfg: Config) -> bool:
    """Whether a results file was written by a run of exactly ``cfg`` (fields added to
    :class:`Config` since the file was written take their defaults)."""
    return not config_diff(cfg, results.get("config") or {})


def finished_results(cfg: Config) -> dict[str, Any] | None:
    """The finished results file (``results/``, written by a real run) of exactly ``cfg``, or
    None."""
    return next((r for r in load_results(method=cfg.method, dataset=cfg.dataset,
                                         labels=cfg.labels, seed=cfg.seed, profile=cfg.profile)
                 if r.get("finished") and same_config(r, cfg)), None)


def _shown_path(path: str) -> str:
    """A results file's path as a reader finds it: from the results folder's parent (the
    repository, ``results/...``) where it lies inside, else the file's name."""
    f, base = Path(path).resolve(), results_dir().resolve().parent
    return str(f.relative_to(base)) if f.is_relative_to(base) else f.name


def _profile_diff(res: dict[str, Any]) -> list[str] | None:
    """The fields in which a run's config differs from what its profile gives today (None:
    the profile cannot build that config today)."""
    from ..config import make_config
    try:
        today = make_config(res["method"], res["dataset"], res["labels"], res["seed"],
                            res["profile"])
    except (ConfigError, KeyError):
        return None
    return config_diff(today, res.get("config") or {})


def _differs_from_profile(res: dict[str, Any]) -> bool:
    """Whether a run's config differs from what its profile gives today (a run made with
    overrides that the profile has since adopted does not)."""
    return _profile_diff(res) != []


def profile_changes(res: dict[str, Any]) -> list[str]:
    """The fields in which the run's profile has changed since the run, other than those the
    run set itself (its overrides): empty for a run of today's profile. A chapter that shows an
    earlier profile's runs says so (``provenance``, the results tables)."""
    diff = _profile_diff(res)
    if diff is None:
        return ["(the profile no longer builds this config)"]
    return [k for k in diff if k not in (res.get("overrides") or {})]


def provenance(res: dict[str, Any]) -> str:
    """One line saying where a result comes from: profile, device, commit, time, file."""
    how = f"loaded from {_shown_path(res['results_file'])}" if res.get("loaded") else "trained now"
    warn = "  [smoke profile: checks the code path only; not a result]" \
        if res["profile"] == "smoke" else ""
    over = f", overrides {res['overrides']}" if res.get("overrides") and _differs_from_profile(res) \
        else ""
    commit = (res.get("git_commit") or "unknown")[:8] + ("+changes" if res.get("git_dirty") else "")
    changed = res.get("profile_changes")
    if changed:
        over += f" (as it was then: today's differs in {', '.join(changed)})"
    return (f"{res['method']}: {how}; profile {res['profile']}{over}; {res['config']['steps']} "
            f"steps on {res['device']}; commit {commit}; {res['elapsed_s']:.0f} s{warn}")
