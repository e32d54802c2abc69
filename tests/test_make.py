"""The Makefile's newcomer targets: the preflight of ``make book`` / ``make test`` (a missing
system program stops make before anything runs, with one line naming the Debian package)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import readme_commands as rc  # noqa: E402

import pytest  # noqa: E402

MAKE = shutil.which("make")


@pytest.mark.parametrize("goal,present,package", [
    ("book", [], "graphviz"),
    ("book-strict", ["chromium"], "graphviz"),
    ("book", ["dot"], "npm"),  # the widgets' JavaScript not packed yet
    ("test", ["dot", "npm"], "chromium"),
    ("render", ["dot", "npm"], "chromium"),
])
def test_preflight_names_the_missing_package_in_one_line(goal, present, package, tmp_path):
    """Only ``present`` on PATH: make stops at once, status 2, one line naming the package."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for prog in present:
        (bin_dir / prog).symlink_to("/bin/true")
    r = subprocess.run([MAKE, "-o", ".venv/.installed", goal, "WIDGETS_JS=_none/embed-amd.js"],
                       cwd=rc.README.parent, env={**os.environ, "PATH": str(bin_dir)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"install it: sudo apt-get install {package}." in lines[0], lines


def test_preflight_passes_when_the_programs_are_there(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for prog in ("dot", "npm", "chromium"):
        (bin_dir / prog).symlink_to("/bin/true")
    r = subprocess.run([MAKE, "-n", "-o", ".venv/.installed", "test"], cwd=rc.README.parent,
                       env={**os.environ, "PATH": str(bin_dir)}, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "pytest" in r.stdout  # make -n lists the test commands it would run
