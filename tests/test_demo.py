"""``python -m semibook demo``: on the real Fashion-MNIST, label spreading then the MLP is ahead
of the same MLP on the labels alone (seed 0 here; seeds 0-2 measured in the commit), it says it
is a demo, and it writes its figure where asked and nothing in the repository."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not DATA.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_demo_shows_the_semi_supervised_learner_ahead(tmp_path):
    fig = tmp_path / "demo.png"
    r = subprocess.run([sys.executable, "-m", "semibook", "demo", "--seeds", "0", "--out",
                        str(fig), "--data-root", str(DATA)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no warnings
    lines = r.stdout.splitlines()
    assert lines[0].startswith("A demo, not the benchmark: 5 labeled images per class")
    seed0 = next(line for line in lines if line.startswith("seed 0: "))
    sup = float(seed0.split("labels alone ")[1].split("%")[0])
    ssl = float(seed0.split("then the MLP ")[1].split("%")[0])
    assert ssl > sup + 2, seed0  # visibly ahead
    assert fig.stat().st_size > 0 and lines[-1] == f"figure: {fig}"


def test_demo_refuses_a_negative_seed_in_one_line():
    r = subprocess.run([sys.executable, "-m", "semibook", "demo", "--seeds", "-1"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "seed" in r.stderr
