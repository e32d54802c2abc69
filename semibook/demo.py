"""``python -m semibook demo``: what unlabeled images are worth, on real images, in about a
minute on a 2-core CPU. A demo, not the benchmark (chapter 6 is that).

Fashion-MNIST, a pool of training images of which a few per class are labeled (drawn from the
seed, class-balanced). Both learners see the same pixels, projected on the pool's first 50
principal components, and train the same small MLP:

- *labels alone*: the MLP on the labeled images;
- *label spreading, then the MLP*: the labels spread over a k-nearest-neighbour graph of the
  whole pool (Zhou et al., 2004, "Learning with local and global consistency"; the
  introduction's label propagation on a 2-D toy, at the size of real data), and the MLP trained
  on every pool image with its spread label.

Both are scored on the test images. The figure goes to ``out``, by default
``~/.cache/semibook/demo.png``: nothing is written in the repository.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .paths import cache_dir

DIM, K, ALPHA, ITERS, MLP_STEPS = 50, 10, 0.99, 50, 300


def _pool(y_train: np.ndarray, pool: int, per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(y_train), pool, replace=False)
    y = y_train[idx]
    lab = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False)
                          for c in np.unique(y_train)])
    return idx, lab


def _features(x_pool: torch.Tensor, x_test: torch.Tensor):
    """Pixels projected on the pool's first DIM principal components, unit scale."""
    flat = lambda x: x.reshape(len(x), -1).float().div(255)
    xp, xt = flat(x_pool), flat(x_test)
    mean = xp.mean(0)
    v = torch.pca_lowrank(xp - mean, q=DIM, center=False)[2]
    zp, zt = (xp - mean) @ v, (xt - mean) @ v
    s = zp.std()
    return zp / s, zt / s


def spread_labels(z: torch.Tensor, lab: np.ndarray, y_lab: np.ndarray, classes: int,
                  chunk: int = 2000) -> torch.Tensor:
    """Label spreading on the symmetric k-NN graph with Gaussian weights (bandwidth: the median
    neighbour distance): F <- alpha S F + (1 - alpha) Y, S = D^-1/2 W D^-1/2; the argmax."""
    n, sq = len(z), (z * z).sum(1)
    nbr, d2 = torch.empty(n, K, dtype=torch.long), torch.empty(n, K)
    for a in range(0, n, chunk):  # distances a chunk of rows at a time
        d = sq[a:a + chunk, None] + sq[None] - 2 * z[a:a + chunk] @ z.T
        d[torch.arange(len(d)), torch.arange(a, a + len(d))] = float("inf")
        d2[a:a + chunk], nbr[a:a + chunk] = d.topk(K, largest=False)
    rows = torch.arange(n).repeat_interleave(K)
    w = torch.sparse_coo_tensor(torch.stack([rows, nbr.reshape(-1)]),
                                torch.exp(-d2 / d2.median()).reshape(-1), (n, n),
                                check_invariants=False)
    w = (w + w.t()).coalesce()
    inv = torch.sparse.sum(w, 1).to_dense().rsqrt()
    i = w.indices()
    s = torch.sparse_coo_tensor(i, w.values() * inv[i[0]] * inv[i[1]], (n, n),
                                check_invariants=False)
    y0 = torch.zeros(n, classes)
    y0[torch.as_tensor(lab), torch.as_tensor(y_lab)] = 1
    f = y0.clone()
    for _ in range(ITERS):
        f = ALPHA * torch.sparse.mm(s, f) + (1 - ALPHA) * y0
    return f.argmax(1)


def train_mlp(z: torch.Tensor, y: torch.Tensor, classes: int, seed: int) -> nn.Module:
    """The same recipe for both learners: full-batch Adam on cross-entropy."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(z.shape[1], 128), nn.ReLU(), nn.Linear(128, classes))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(MLP_STEPS):
        loss = F.cross_entropy(net(z), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def demo_seed(data, seed: int, pool: int, per_class: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    y_train = data.y_train.numpy()
    idx, lab = _pool(y_train, pool, per_class, seed)
    y_pool = torch.as_tensor(y_train[idx])
    torch.manual_seed(seed)  # pca_lowrank draws a random projection
    z, zt = _features(data.x_train[idx], data.x_test)
    k = data.info.num_classes
    y_spread = spread_labels(z, lab, y_pool[lab].numpy(), k)
    acc = lambda net: (net(zt).argmax(1) == data.y_test).float().mean().item()
    sup = train_mlp(z[lab], y_pool[lab], k, seed)
    ssl = train_mlp(z, y_spread, k, seed)
    with torch.no_grad():
        return {"seed": seed, "labels": len(lab), "pool": pool, "supervised": acc(sup),
                "semi_supervised": acc(ssl),
                "spread_correct": (y_spread == y_pool).float().mean().item(),
                "seconds": time.perf_counter() - t0}


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    x = np.arange(len(rows))
    for dx, key, name in ((-0.2, "supervised", "labels alone"),
                          (0.2, "semi_supervised", "label spreading, then the MLP")):
        bars = ax.bar(x + dx, [100 * r[key] for r in rows], 0.4, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_xticks(x, [f"seed {r['seed']}" for r in rows])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Fashion-MNIST, {rows[0]['labels']} labels in a pool of {rows[0]['pool']:,} "
                 f"images (a demo)", fontsize=10)
    ax.legend(loc="upper left", ncol=2, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def demo(seeds=(0, 1, 2), per_class: int = 5, pool: int = 20000, out: str | None = None,
         data_root: str | None = None, log: Callable[[str], None] = print) -> list[dict]:
    from .data import load_dataset
    torch.set_num_threads(1)  # small matrices: one thread is about as fast, and shares the CPU
    data = load_dataset("fashion-mnist", data_root)
    log(f"A demo, not the benchmark: {per_class} labeled images per class in a pool of {pool:,} "
        f"Fashion-MNIST training images, the same MLP on the same pixels (50 principal "
        f"components), scored on the {len(data.y_test):,} test images.")
    rows = []
    for seed in seeds:
        r = demo_seed(data, seed, pool, per_class)
        rows.append(r)
        gain = 100 * (r["semi_supervised"] - r["supervised"])
        log(f"seed {seed}: labels alone {100 * r['supervised']:.1f}%, label spreading then the "
            f"MLP {100 * r['semi_supervised']:.1f}% ({gain:+.1f} points; "
            f"{100 * r['spread_correct']:.1f}% of the spread labels right; {r['seconds']:.0f} s)")
    out = Path(out) if out else cache_dir() / "demo.png"
    plot(rows, out)
    log(f"figure: {out}")
    return rows
