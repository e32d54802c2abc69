"""The Makefile's newcomer targets: ``make lab`` (JupyterLab from .venv on the chapters: the
server starts, serves a chapter and the Python kernel the chapters run on, stops when asked, and
leaves the clone as it was) and the preflight of ``make book`` / ``make test`` (a missing system
program stops make before anything runs, with one line naming the Debian package)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import readme_commands as rc  # noqa: E402

import pytest  # noqa: E402

MAKE = shutil.which("make")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def test_make_lab_serves_the_chapters_and_stops(tmp_path):
    assert "make lab" in rc.shown(rc.README.read_text())  # the README tells how to open one
    clone = rc.clean_clone(rc.README.parent, tmp_path / "clone", Path(sys.prefix))
    port, token = _free_port(), "semibook-test"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "no_proxy": "127.0.0.1"}
    args = f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    lab = subprocess.Popen(["make", "-o", ".venv/.installed", "lab", f"LAB_ARGS={args}"],
                           cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # up when its API answers
            try:
                _get(f"{base}/api/status?token={token}")
                break
            except OSError:
                assert lab.poll() is None, lab.stdout.read().decode()[-2000:]
                assert time.monotonic() < deadline, "JupyterLab did not answer in 120 s"
                time.sleep(1)
        status, body = _get(f"{base}/api/contents/01_mixmatch.ipynb?token={token}")
        nb = json.loads(body)
        assert status == 200 and nb["type"] == "notebook"  # root_dir is book/
        assert nb["content"]["cells"][0]["cell_type"] == "markdown"
        kernels = json.loads(_get(f"{base}/api/kernelspecs?token={token}")[1])
        assert "python3" in kernels["kernelspecs"]
        status, page = _get(f"{base}/lab/tree/01_mixmatch.ipynb?token={token}")
        assert status == 200 and b"JupyterLab" in page
    finally:
        try:
            os.killpg(lab.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass  # make and the server had already stopped (the assertion above says why)
        try:
            lab.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            raise
    assert lab.returncode is not None
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", status


@pytest.mark.parametrize("goal,present,package", [
    ("test", [], "graphviz"),  # the chapters run in the smoke profile draw their diagrams
    ("execute", [], "graphviz"),
    ("book", [], "npm"),  # the widgets' JavaScript not packed yet; no Graphviz needed (the
    ("book-strict", ["chromium"], "npm"),  # diagrams are the chapters' committed outputs)
    ("test", ["dot", "npm"], "chromium"),
    ("render", ["dot", "npm"], "chromium"),
])
def test_preflight_names_the_missing_package_in_one_line(goal, present, package, tmp_path):
    """Only ``present`` on PATH: make stops at once, status 2, one line naming the package."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for prog in present:
        (bin_dir / prog).symlink_to("/bin/true")
    # --no-print-directory: under make test (MAKELEVEL 1) make would print its folder first
    r = subprocess.run([MAKE, "--no-print-directory", "-o", ".venv/.installed", goal,
                        "WIDGETS_JS=_none/embed-amd.js"],
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


def test_semibook_is_installed_as_a_path_entry_so_a_folder_named_semibook_cannot_shadow_it(
        tmp_path):
    """A notebook run beside a folder named ``semibook`` (a clone's root) imported that folder
    as an empty namespace package ("module 'semibook' has no attribute 'setup'") when
    setuptools' editable import hook installed the package; the Makefile installs it in compat
    mode, a path entry for the repository, and a regular package on the path wins over a
    namespace folder in the working directory."""
    r = subprocess.run([MAKE, "-n", "-B", ".venv/.installed"], cwd=rc.README.parent,
                       capture_output=True, text=True, timeout=60)
    install = [line for line in r.stdout.splitlines() if " -e ." in line]
    assert install and "editable_mode=compat" in install[0]
    (tmp_path / "semibook").mkdir()  # what shadowed it
    code = "import semibook; print(semibook.__file__)"
    env = {**os.environ, "PYTHONPATH": str(rc.README.parent)}  # what compat mode's .pth adds
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.stdout.strip() == str(rc.README.parent / "semibook" / "__init__.py"), r.stderr
