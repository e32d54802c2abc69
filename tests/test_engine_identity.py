"""The engine computes what it computed before a refactor: short runs of two classification and
two segmentation methods give the weights, optimizer state and history recorded in
``tests/engine_fingerprints.json``.

The fingerprints were written by the engine before it was split into its files (one
``loop.py``), on the reference code path (every CPU speed option off). Floating-point kernels
differ between processors, torch versions and thread counts, so the digests are kept per
(vector instructions, torch version, threads): where this machine has one, the run must match it bit for bit;
elsewhere its losses and metrics must match the nearest recorded ones to 1e-4 (a refactor
that changes what is computed moves them far more). ``python tests/test_engine_identity.py``
records this machine's digests (only after a change meant to alter the numbers)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

FINGERPRINTS = Path(__file__).with_name("engine_fingerprints.json")
# every speed option off: the reference path, whatever a profile's defaults become
REFERENCE = dict(precision="fp32", channels_last="off", fused_optimizer="off", compile=False)
CASES = {
    "mixmatch": ("fashion-mnist", 20),
    "mean_teacher": ("fashion-mnist", 20),
    # the scenes the record was made on: the first, eleven-class ones
    "cps": ("fashion-scenes-v1", 16),
    "soft_teacher": ("fashion-scenes-v1", 16),
}


def host_key() -> str:
    from semibook.engine.seed import host_info
    return (f"{host_info().get('vector', 'none known')} | torch {torch.__version__.split('+')[0]}"
            f" | {torch.get_num_threads()} threads")  # kernels' reductions differ by threads


def digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(k.encode() + str(t.dtype).encode() + str(list(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def numbers(history: list[dict]) -> dict[str, float]:
    """Every finite number of the history (losses, metrics, agreement) by its path."""
    out: dict[str, float] = {}

    def walk(prefix: str, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}/{k}", x)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(f"{prefix}/{i}", x)
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[prefix] = float(v)
    for r in history:
        if r["kind"] == "segment":  # provenance (split and code hashes), not computation
            continue
        walk(f"{r['kind']}@{r['step']}", {k: x for k, x in r.items() if k != "elapsed_s"})
    return out


@pytest.mark.parametrize("method", list(CASES))
def test_engine_computes_what_it_computed_before_the_split(method, tiny, tiny_scenes_v1,
                                                          tmp_path):
    dataset, labels = CASES[method]
    got = _run(method, dataset, labels, tmp_path, tiny if dataset == "fashion-mnist" else
               tiny_scenes_v1)
    recorded = json.loads(FINGERPRINTS.read_text()) if FINGERPRINTS.exists() else {}
    if os.environ.get("SEMIBOOK_RECORD_FINGERPRINTS"):  # see the module's docstring
        recorded.setdefault(host_key(), {})[method] = got
        FINGERPRINTS.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    exact = recorded.get(host_key(), {}).get(method)
    if exact is not None:
        assert got["weights"] == exact["weights"], "weights differ from the recorded run"
        assert got["optimizer"] == exact["optimizer"], "optimizer state differs"
        # numbers added to the history since (per-class diagnosis) are not in the record
        assert {k: got["history"].get(k) for k in exact["history"]} == exact["history"]
        return
    # another processor or torch: the nearest recorded numbers, to 1e-4
    others = [v[method] for v in recorded.values() if method in v]
    assert others, f"no fingerprint of {method} recorded"
    best = min(others, key=lambda o: max(abs(got["history"].get(k, 1e9) - x)
                                         for k, x in o["history"].items()))
    assert set(best["history"]) <= set(got["history"])
    for k, x in best["history"].items():
        assert got["history"][k] == pytest.approx(x, rel=1e-4, abs=1e-4), k


def _run(method, dataset, labels, tmp_path, extra):
    import semibook as sb
    from semibook.engine.checkpoint import load_checkpoint
    kw = dict(steps=6, eval_every=3, log_every=3, **REFERENCE, **extra)
    cfg = sb.make_config(method, dataset, labels, 0, "smoke", **kw)
    res = sb.fit(cfg, tmp_path / method, progress=False, device="cpu")
    state = load_checkpoint(tmp_path / method / "checkpoint.pt")
    opt = {f"{i}/{k}": torch.as_tensor(v) for i, s in state["optimizer"]["state"].items()
           for k, v in s.items()}
    return {"weights": digest(state["method"]), "optimizer": digest(opt),
            "history": numbers(res["history"])}


if __name__ == "__main__":  # record this machine's fingerprints (the reference code path)
    os.environ["SEMIBOOK_RECORD_FINGERPRINTS"] = "1"
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
