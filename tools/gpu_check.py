#!/usr/bin/env python3
"""One prepared GPU check: everything one call of a lent GPU machine runs, and its preparation.

    python tools/gpu_check.py prepare   # here: the carried folders and the device command
    python tools/gpu_check.py run       # on the GPU machine (or any CUDA machine): the stages
    python tools/gpu_check.py dry       # here, on the CPU: prepare, then the stages on tiny sizes

``prepare`` (``make gpu-prepare``) downloads the wheels of the packages the device's image lacks
into the ignored ``.whl/`` (segmentation-models-pytorch; every requirement of it is in the
image), copies Fashion-MNIST's four idx files into the ignored ``.gpu-data/``, measures what one
call carries (the working tree and those two folders) and prints the device command.

``run`` (``make gpu-check``) runs these stages in order, each under its own time limit
(coreutils ``timeout``, which also ends the stage's child processes), all inside one budget
(``--budget``, 420 s on a device: 7 of the 8 minutes one call is planned for, installs included):

1. install: the carried wheels into a temporary site folder, with no package index;
2. env: Python, PyTorch and package versions, the GPU and its memory;
3. tests: the unit tests marked ``cuda`` (``tests/test_cuda.py``);
4. smoke: every method of both benchmark tables in the ``smoke`` profile on the device;
5. bench: ``python -m semibook bench`` for every case, the two paper shapes first;
6. reproduce: the runs of both benchmark tables at the ``full`` profile (the runs
   ``python -m semibook reproduce`` makes), several processes at once on the one GPU, seed 0
   first, started while the budget lasts; a run still going at its end is stopped and its
   reached step recorded.

Everything measured goes to one folder (``--out``: ``$OUT`` on the device, else
``_build/gpu-check``), at most 8 files, rewritten after every stage and every finished run, so a
call stopped at its limit still returns what finished: ``gpu-check.json`` (each stage: status,
limit, time and what it measured), ``gpu-check.log`` (every command's output),
``cuda-tests.xml``, ``bench.json`` and ``results-cuda.tar.gz``. The archive holds the results
files of the finished runs as ``results/cuda/<name>.json`` (their ``device`` field names the
GPU) and the benchmark report as ``results/bench/<gpu>.json``: unpacked at the repository's root
they land beside the CPU's results files and never replace one (``results/*.json``, which the
book reads, stays as it is).

``dry`` (``make gpu-check DRY=1``) prepares, prints the command and runs the same stages on the
CPU at tiny sizes (smoke runs of 2 steps, ``bench --quick``, full-profile runs cut to 2 steps),
so that the script cannot rot between the days a GPU is lent.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
import zipfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WHEELS_DIR, DATA_DIR = ".whl", ".gpu-data"
CARRY = (WHEELS_DIR, DATA_DIR)
# The device's image lacks segmentation-models-pytorch (read from its package list); every
# requirement of it is there. These are the image's packages that semibook's code and that
# wheel need: a requirement outside this set would be downloaded too.
MISSING_ON_DEVICE = ("segmentation-models-pytorch",)
ON_DEVICE = frozenset(
    "filelock fsspec huggingface-hub hypothesis jinja2 matplotlib networkx numpy packaging pillow "
    "pytest pyyaml safetensors sympy timm torch torchvision tqdm triton typing-extensions".split())
DEVICE_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
CARRY_LIMIT_MIB, COMMAND_LIMIT, CALL_TIMEOUT_S = 64, 2000, 480
DEVICE_COMMAND = 'PYTHONUNBUFFERED=1 python3 tools/gpu_check.py run --out "$OUT"'

STATE, LOG, JUNIT, BENCH = "gpu-check.json", "gpu-check.log", "cuda-tests.xml", "bench.json"
SOURCE = "source.json"  # in the data folder: the commit prepare ran on
# (budget of a stage in seconds on a device, in a dry run); reproduce takes what is left
# The dry run's limits leave room for a slower or busy CPU: on this project's 2-core CPU the
# whole dry run took 194 s idle on 2026-12-01 (smoke 85 s, bench 72 s), a host on which a smoke
# limit of 90 s had already been passed once under load.
STAGE_BUDGET = {"install": (60, 60), "env": (60, 60), "tests": (150, 90), "smoke": (60, 180),
                "bench": (120, 150)}
END_RESERVE_S = 10  # packing and the last write of the stages file
DRY_SCALE_MAX = 4.0  # a dry run's limits grow with the load up to 4x (480 s -> 32 min)


def dry_scale() -> dict:
    """How much longer than idle a dry run may take here: 1 + the one-minute load average per
    core, from 1 to DRY_SCALE_MAX. A dry run checks the script, not the machine's speed, so its
    limits are its idle ones times this factor: on the 2-core CPU at load 2 to 3, 2 to 2.5."""
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    return {"load_1min": round(load, 2), "cpus": cpus,
            "factor": round(min(DRY_SCALE_MAX, max(1.0, 1 + load / cpus)), 2)}
RUN_START_MIN_S = (30, 5)  # no full-profile run is started with less left (device, dry)
MAX_JOBS = 12  # full-profile runs at once on the one GPU (launch-bound small models)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- prepare ----------------------------------------------------------------------------------

def _wheel_name(path: Path) -> str:
    return _norm(path.name.split("-")[0])


def _requirements(wheel: Path) -> list[str]:
    """The names a wheel requires (its METADATA's Requires-Dist, extras left out)."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    reqs = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Requires-Dist:")]
    return [_norm(re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0]) for r in reqs
            if "extra ==" not in r]


def _download(name: str, version: str, into: Path) -> None:
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                    "--only-binary=:all:", "--python-version", DEVICE_PYTHON, "--implementation",
                    "cp", *platforms, "-d", str(into), f"{name}=={version}"], check=True)


def prepare_wheels(folder: Path, offline: bool) -> list[str]:
    """The wheels the device lacks, in ``folder``: each at the version installed here (the one
    the CPU tests ran with), their requirements missing on the device too, one version of each
    (others removed). Returns one line per wheel."""
    folder.mkdir(parents=True, exist_ok=True)
    plan, lines, kept = list(MISSING_ON_DEVICE), [], set()
    for name in plan:  # grows while it is walked: the requirements the device lacks
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is not installed here (pip install -r requirements.txt): "
                             f"the device gets the version the CPU tests run with") from None
        have = [w for w in folder.glob("*.whl") if _wheel_name(w) == name
                and w.name.split("-")[1] == version]
        if not have and not offline:
            _download(name, version, folder)
            have = [w for w in folder.glob("*.whl") if _wheel_name(w) == name]
            lines.append(f"{name} {version}: downloaded ({have[0].name})")
        elif have:
            lines.append(f"{name} {version}: already there ({have[0].name})")
        else:
            lines.append(f"{name} {version}: NOT downloaded (--offline)")
        for w in have:
            kept.add(w.name)
            plan += [r for r in _requirements(w) if r not in ON_DEVICE and r not in plan]
    for w in folder.glob("*.whl"):
        if w.name not in kept:
            w.unlink()
            lines.append(f"removed {w.name} (not needed, or another version)")
    return lines


def prepare_data(folder: Path, source: str | None) -> str:
    """Fashion-MNIST's four idx files copied into ``folder/fashion-mnist``; from ``source``, else
    from where semibook finds them ($SEMIBOOK_DATA, Debian's folder, the download cache)."""
    from semibook.data.fashion_mnist import FILES, SYSTEM_DIR, _find
    from semibook.paths import cache_dir
    places = [Path(source)] if source else [
        *([Path(os.environ["SEMIBOOK_DATA"])] if os.environ.get("SEMIBOOK_DATA") else []),
        SYSTEM_DIR, cache_dir()]
    for place in places:
        found = [_find(place, stem) for stem in FILES.values()]
        if all(found):
            target = folder / "fashion-mnist"
            target.mkdir(parents=True, exist_ok=True)
            for f in found:
                if not (target / f.name).exists() or \
                        (target / f.name).stat().st_size != f.stat().st_size:
                    shutil.copy2(f, target / f.name)
            return f"fashion-mnist: the 4 idx files from {place}"
    raise SystemExit(f"Fashion-MNIST not found in: {', '.join(map(str, places))}")


def tree_bytes(root: Path) -> tuple[int, int]:
    """Files and bytes of what travels as the working tree: tracked files and untracked ones
    git does not ignore."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                             capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit(f"{root} is not a git checkout: what a call carries cannot be measured")
    files = [root / f for f in out if f and (root / f).is_file()]
    return len(files), sum(f.stat().st_size for f in files)


def git_state(root: Path) -> dict:
    """The checkout's commit and whether tracked files differ from it (None: no git here, as
    on a machine that got a copy of the working tree without its .git)."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": git("rev-parse", "HEAD"),
            "git_dirty": None if status is None else status != ""}


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def prepare(into: Path, offline: bool = False, data_src: str | None = None) -> dict:
    """Fill the carried folders under ``into`` (the repository's root by default), print what
    they hold, the sizes one call carries and the device command."""
    wheels = prepare_wheels(into / WHEELS_DIR, offline)
    data = prepare_data(into / DATA_DIR, data_src)
    # the commit the check's code comes from, for its stages file (the machine may get the
    # working tree without .git, and then the results files name no commit)
    (into / DATA_DIR / SOURCE).write_text(json.dumps(git_state(ROOT)) + "\n")
    n_files, tree = tree_bytes(ROOT)
    sizes = {"working tree": tree, **{c: folder_bytes(into / c) for c in CARRY}}
    total = sum(sizes.values())
    print(f"{WHEELS_DIR}/ (wheels for Python {DEVICE_PYTHON}):")
    print("".join(f"  {ln}\n" for ln in wheels), end="")
    print(f"{DATA_DIR}/:\n  {data}")
    print(f"what one call carries (limit {CARRY_LIMIT_MIB} MiB):")
    print(f"  {'working tree':<14}{_mib(tree):>11}  ({n_files} files: tracked, and untracked "
          f"ones git does not ignore)")
    for c in CARRY:
        print(f"  {c:<14}{_mib(sizes[c]):>11}")
    print(f"  {'total':<14}{_mib(total):>11}"
          + ("" if total < CARRY_LIMIT_MIB * 2**20 else "  OVER THE LIMIT"))
    print(f"device command ({len(DEVICE_COMMAND)} characters, limit {COMMAND_LIMIT}), run in the "
          f"repository's root:")
    print(f"command: {DEVICE_COMMAND}")
    print(f"carry: {' '.join(CARRY)}")
    print(f"timeout_s: {CALL_TIMEOUT_S}")
    return {"command": DEVICE_COMMAND, "carry": list(CARRY), "sizes": sizes, "total": total}


# -- run --------------------------------------------------------------------------------------

ENV_PROBE = """
import json, os, platform, sys
import importlib.metadata as md
import torch
info = {"python": platform.python_version(), "cpus": os.cpu_count(),
        "cuda": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
for n in ("torch", "torchvision", "timm", "huggingface-hub", "segmentation-models-pytorch",
          "numpy", "pytest"):
    try:
        info[n] = md.version(n)
    except md.PackageNotFoundError:
        info[n] = None
if info["cuda"]:
    p = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info(0)
    info.update(gpu=p.name, capability=f"{p.major}.{p.minor}",
                multiprocessors=p.multi_processor_count, gpu_memory_bytes=total,
                gpu_free_bytes=free)
try:
    import segmentation_models_pytorch
    info["smp_import"] = "ok"
except Exception as e:
    info["smp_import"] = f"{type(e).__name__}: {e}"
with open(sys.argv[1], "w") as f:
    json.dump(info, f)
"""


class Check:
    """The stages, their limits and the files under ``out``."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.dry = args, args.dry
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(args.work or tempfile.mkdtemp(prefix="semibook-gpu-check-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.carry_root = Path(args.carry_root)
        self.start = time.monotonic()
        self.deadline = self.start + args.budget
        self.scale = getattr(args, "scale", None) or {"factor": 1.0}
        self.device = "cpu"
        self.info: dict = {}
        from semibook.paths import splits_dir
        self.splits_before = {p.name for p in splits_dir().glob("*.json")}  # before any stage
        # nothing outside a GPU machine can be reached: no download is tried
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", SEMIBOOK_NO_DOWNLOAD="1",
                        HF_HUB_OFFLINE="1", SEMIBOOK_RESULTS=str(self.work / "results"),
                        SEMIBOOK_RUNS=str(self.work / "runs"))
        data = self.carry_root / DATA_DIR / "fashion-mnist"
        if data.is_dir():
            self.env["SEMIBOOK_DATA"] = str(data)
        self.state = {"mode": "dry" if self.dry else "device", "started": _now(),
                      "budget_s": args.budget, "tasks": args.tasks, "finished": False,
                      **({"dry_scale": self.scale} if self.dry else {}),
                      "data": self.env.get("SEMIBOOK_DATA", "semibook's own search"),
                      "code": git_state(ROOT), "stages": []}
        source = self.carry_root / DATA_DIR / SOURCE
        if source.exists():
            self.state["code"]["prepared_from"] = json.loads(source.read_text())
        (self.out / LOG).write_text(f"gpu-check {self.state['mode']} {self.state['started']}\n")
        self.save()

    # files and commands

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        self.state["wall_s"] = round(time.monotonic() - self.start, 1)
        tmp = self.out / (STATE + ".tmp")
        tmp.write_text(json.dumps(self.state, indent=1) + "\n")
        os.replace(tmp, self.out / STATE)

    def log(self, text: str, echo: bool = True) -> None:
        with open(self.out / LOG, "a") as f:
            f.write(text + "\n")
        if echo:
            print(text, flush=True)

    def sh(self, cmd: list, limit: float) -> int:
        """Run ``cmd`` under ``timeout`` (exit status 124: stopped at ``limit``, with its child
        processes), its output appended to the log; returns the exit status."""
        shown = ("<script>" if "\n" in str(c) else str(c) for c in cmd)
        self.log("$ " + " ".join(shown), echo=False)
        with open(self.out / LOG, "a") as f:
            return subprocess.run(["timeout", "-k", "10", str(max(1, int(limit))),
                                   *map(str, cmd)], cwd=ROOT, env=self.env, stdout=f,
                                  stderr=subprocess.STDOUT).returncode

    @staticmethod
    def status(rc: int) -> str:
        return "ok" if rc == 0 else "timeout" if rc in (124, 137) else "failed"

    def stage(self, name: str, fn) -> dict:
        budget = STAGE_BUDGET[name][self.dry] * (self.scale["factor"] if self.dry else 1) \
            if name in STAGE_BUDGET else self.left()
        limit = min(budget, self.left() - END_RESERVE_S)
        rec = {"name": name, "status": "running", "limit_s": round(limit)}
        self.state["stages"].append(rec)
        if limit < 5:
            rec["status"] = "skipped (no time left in the budget)"
        elif self.state.get("stop"):
            rec["status"] = f"skipped ({self.state['stop']})"
        else:
            self.log(f"== {name} (limit {limit:.0f} s)")
            self.save()
            t = time.monotonic()
            try:
                fn(rec, limit)
            except Exception:
                rec["status"] = "error"
                self.log(traceback.format_exc())
            rec["wall_s"] = round(time.monotonic() - t, 1)
        self.log(f"-- {name}: {rec['status']}" + (f" in {rec['wall_s']} s" if "wall_s" in rec
                                                  else ""))
        self.save()
        return rec

    # the stages

    def install(self, rec: dict, limit: float) -> None:
        wheels = sorted((self.carry_root / WHEELS_DIR).glob("*.whl"))
        rec["wheels"] = [w.name for w in wheels]
        if not wheels:
            rec["status"] = "skipped (no wheels carried)"
            return
        site = self.work / "site"
        rc = self.sh([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                      "--no-compile", "--no-cache-dir", "--upgrade", "--target", site, *wheels],
                     limit)
        rec.update(rc=rc, status=self.status(rc), site=str(site))
        if rc == 0:
            self.env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(site), self.env.get("PYTHONPATH")) if p)

    def probe(self, rec: dict, limit: float) -> None:
        path = self.work / "env.json"
        rc = self.sh([sys.executable, "-c", ENV_PROBE, path], limit)
        if rc == 0:
            self.info = json.loads(path.read_text())
        if shutil.which("nvidia-smi"):
            self.sh(["nvidia-smi"], 30)
        rec.update(rc=rc, status=self.status(rc), info=self.info)
        self.device = "cuda" if self.info.get("cuda") and not self.dry else "cpu"
        rec["device"] = self.device
        if not self.dry and self.device != "cuda":
            rec["status"] = "failed"
            why = (f"the environment probe failed (exit status {rc}; {LOG} has its output)"
                   if rc != 0 else "no CUDA device: torch.cuda.is_available() is False here")
            rec["reason"] = self.state["stop"] = (
                f"{why}; on a CPU, make gpu-check DRY=1 checks the script at tiny sizes")

    def tests(self, rec: dict, limit: float) -> None:
        junit = self.out / JUNIT
        start = (self.out / LOG).stat().st_size
        rc = self.sh([sys.executable, "-m", "pytest", "-v", "-rsxX", "-p", "no:cacheprovider",
                      "-m", "cuda", "tests/test_cuda.py", f"--junitxml={junit}"], limit)
        rec.update(rc=rc, status=self.status(rc))
        with open(self.out / LOG) as f:  # pytest stopped at the limit writes no JUnit file
            f.seek(start)
            rec["tests"] = junit_outcomes(junit) if junit.exists() else verbose_outcomes(f.read())
        if rec["tests"]:
            counts: dict[str, int] = {}
            for t in rec["tests"].values():
                counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
            rec["counts"] = counts

    def smoke(self, rec: dict, limit: float) -> None:
        report = self.work / "smoke.json"
        rc = self.sh([sys.executable, Path(__file__), "smoke", "--device", self.device,
                      "--tasks", *self.args.tasks, "--work", self.work / "smoke",
                      "--report", report, *(["--steps", "2"] if self.dry else [])], limit)
        rec.update(rc=rc, status=self.status(rc))
        if report.exists():
            rec["runs"] = json.loads(report.read_text())

    def bench(self, rec: dict, limit: float) -> None:
        from semibook.bench import CASES
        from semibook.data import dataset_info
        # the paper shapes first (the targets are set on them), then the tables' own cases
        cases = [n for n, c in CASES.items() if c.shape is not None] + [
            n for n, c in CASES.items() if c.shape is None
            and dataset_info(c.dataset).task in self.args.tasks]
        sizes = ["--quick", "--steps", "1", "--warmup", "1", "--ref-workers", "0"] if self.dry \
            else ["--steps", "20", "--warmup", "5"]
        # the bench writes its report whole at the end; the cases measured before a stop at the
        # limit come from its --partial file
        partial = self.work / BENCH
        rc = self.sh([sys.executable, "-m", "semibook", "bench", "--cases", *cases, "--device",
                      self.device, "--out", self.out / BENCH, "--partial", partial, *sizes],
                     limit)
        rec.update(rc=rc, status=self.status(rc), cases_asked=len(cases))
        if not (self.out / BENCH).exists() and partial.exists():
            shutil.copyfile(partial, self.out / BENCH)
            rec["partial"] = True
        if (self.out / BENCH).exists():
            rep = json.loads((self.out / BENCH).read_text())
            rec["matmul_tflops"] = round(rep["matmul"]["best_flops_per_s"] / 1e12, 2)
            rec["cases"] = {n: bench_row(c) for n, c in rep["cases"].items()}

    def jobs(self) -> tuple[int, str]:
        """How many full-profile runs share the GPU: at most MAX_JOBS, a core each (two left
        for the rest), and as many as half the GPU's memory holds at twice the largest peak
        that the bench measured for a table's case plus 1 GiB of CUDA context each."""
        if self.args.jobs:
            return self.args.jobs, "--jobs"
        if self.dry:
            return 2, "dry run"
        cpus = max(1, (os.cpu_count() or 1) - 2)
        n, why = min(MAX_JOBS, cpus), f"min({MAX_JOBS}, {cpus} cores)"
        stage = next((s for s in self.state["stages"] if s["name"] == "bench"), {})
        peaks = [c["peak_mib"] for name, c in stage.get("cases", {}).items()
                 if name.endswith("-full")]
        if peaks and self.info.get("gpu_memory_bytes"):
            each = 2 * max(peaks) * 2**20 + 2**30
            fit = max(1, int(self.info["gpu_memory_bytes"] / 2 / each))
            if fit < n:
                n, why = fit, f"memory: {fit} x {_mib(each)} in half the GPU"
            else:
                why += f"; memory would hold {fit}"
        return n, why

    def reproduce(self, rec: dict, limit: float) -> None:
        from semibook.config import make_config
        from semibook.engine.results import result_name
        from semibook.reproduce import entries
        # seed by seed, the segmentation runs (the longer ones on the CPU) first within a seed;
        # a dry run takes the first run of each table unless --max-runs says otherwise
        tables = [entries(task) for task in self.args.tasks]
        todo = sorted((e for t in tables for e in t),
                      key=lambda e: (e.seed, e.dataset != "fashion-scenes"))
        if self.args.max_runs:
            todo = todo[:self.args.max_runs]
        elif self.dry:
            todo = [t[0] for t in tables]
        jobs, why = self.jobs()
        rec.update(jobs=jobs, jobs_why=why, planned=len(todo), runs=[])
        stop_at = time.monotonic() + limit
        logs = self.work / "logs"
        logs.mkdir(exist_ok=True)
        running: dict = {}
        dry = dict(steps=2, eval_every=2, eval_size=64) if self.dry else {}
        extra = [a for k, v in dry.items() for a in (f"--{k.replace('_', '-')}", str(v))]
        while todo or running:
            left = stop_at - time.monotonic()
            while todo and len(running) < jobs and left > RUN_START_MIN_S[self.dry]:
                e = todo.pop(0)
                name = f"{e.dataset}_{e.labels}_{e.method}_seed{e.seed}"
                cmd = ["timeout", "-k", "5", str(int(left)), sys.executable, "-m", "semibook",
                       "run", "--method", e.method, "--dataset", e.dataset, "--labels",
                       str(e.labels), "--seed", str(e.seed), "--profile", "full", "--device",
                       self.device, "--yes", "--quiet", "--json", "--run-dir",
                       str(self.work / "runs" / name), *extra]
                log = open(logs / f"{name}.log", "w")
                proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(self.env, OMP_NUM_THREADS="1"),
                                        stdout=log, stderr=subprocess.STDOUT)
                running[proc] = (e, name, time.monotonic(), log)
            for proc in [p for p in running if p.poll() is not None]:
                e, name, t0, log = running.pop(proc)
                log.close()
                cfg = make_config(e.method, e.dataset, e.labels, e.seed, "full", **dry)
                row = run_row(name, proc.returncode, time.monotonic() - t0,
                              self.work / "results" / result_name(cfg),
                              self.work / "runs" / name / "history.jsonl")
                rec["runs"].append(row)
                self.log(f"{row['status']:>8} {name} ({row['wall_s']:.0f} s"
                         + (f", {row['metric']} {row['last']:.4f}" if "last" in row else "")
                         + ")")
                self.log((logs / f"{name}.log").read_text(), echo=False)
                self.pack()
                self.save()
            if todo and stop_at - time.monotonic() <= RUN_START_MIN_S[self.dry] \
                    and not running:
                break
            time.sleep(0.5)
        rec["not_started"] = [f"{e.dataset}_{e.labels}_{e.method}_seed{e.seed}" for e in todo]
        done = [r for r in rec["runs"] if r["status"] == "done"]
        rec["done"] = len(done)
        rec["sum_elapsed_s"] = round(sum(r.get("elapsed_s", 0) for r in done), 1)
        bad = [r for r in rec["runs"] if r["status"] == "failed"]
        rec["status"] = "failed" if bad else "ok" if not todo and len(done) == len(
            rec["runs"]) else "partial (budget ended)"

    # the archive

    def pack(self) -> None:
        """results-<tag>.tar.gz: the finished runs' results files as results/<tag>/<name>,
        the bench report as results/bench/<gpu>.json (a dry run's beside the runs), and the
        split files drawn during the check (splits/<name>, new in the splits folder)."""
        from semibook.paths import splits_dir
        tag = "cuda" if self.device == "cuda" else "dry-cpu"
        members = [(f, f"results/{tag}/{f.name}")
                   for f in sorted((self.work / "results").glob("*.json"))]
        bench = self.out / BENCH
        if bench.exists():
            gpu = re.sub(r"[^a-z0-9]+", "-", json.loads(bench.read_text())["device"].lower())
            members.append((bench, f"results/bench/{gpu.strip('-')}.json" if tag == "cuda"
                            else f"results/{tag}/bench.json"))
        members += [(p, f"splits/{p.name}") for p in sorted(splits_dir().glob("*.json"))
                    if p.name not in self.splits_before]
        tmp = self.out / f"results-{tag}.tar.gz.tmp"
        with tarfile.open(tmp, "w:gz") as tar:
            for path, arc in members:
                tar.add(path, arcname=arc)
        os.replace(tmp, self.out / f"results-{tag}.tar.gz")
        self.state["archive"] = {"file": f"results-{tag}.tar.gz",
                                 "members": [arc for _, arc in members]}

    def summary(self) -> str:
        lines = [f"gpu-check ({self.state['mode']}, {self.device}): {self.state['wall_s']:.0f} s "
                 f"of a {self.args.budget} s budget; files in {self.out}:"]
        for s in self.state["stages"]:
            what = ""
            if s["name"] == "tests" and "counts" in s:
                what = ", ".join(f"{v} {k}" for k, v in s["counts"].items())
            elif s["name"] == "smoke" and "runs" in s:
                what = f"{sum(r['rc'] == 0 for r in s['runs'])} of {len(s['runs'])} methods ran"
            elif s["name"] == "bench" and "cases" in s:
                what = f"{len(s['cases'])} of {s['cases_asked']} cases"
            elif s["name"] == "reproduce" and "runs" in s:
                what = (f"{s['done']} of {s['planned']} runs finished, {s['jobs']} at a time; "
                        f"{len(s['not_started'])} not started")
            lines.append(f"  {s['name']:<10} {s['status']:<12} {s.get('wall_s', 0):>6.0f} s  "
                         f"{what or s.get('reason', '')}")
        if self.dry:
            sc = self.scale
            lines.append(f"  limits x{sc['factor']} of the idle ones (load {sc.get('load_1min')} "
                         f"on {sc.get('cpus')} cores at the start)")
        return "\n".join(lines)


def junit_outcomes(path: Path) -> dict[str, dict]:
    """Each test case of a JUnit XML file: outcome (passed, failed, error, skipped, xfailed)
    and, where there is one, the message."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                if child.tag == "skipped" and child.get("type") == "pytest.xfail":
                    outcome = "xfailed"
                message = (child.get("message") or "")[:500]
        out[f"{case.get('classname')}::{case.get('name')}"] = {"outcome": outcome,
                                                                "message": message}
    return out


def verbose_outcomes(text: str) -> dict[str, dict]:
    """The outcome of each test that ``pytest -v`` reported as it went (``path::test OUTCOME``)."""
    found = re.findall(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)", text, re.M)
    return {name: {"outcome": {"XFAIL": "xfailed"}.get(o, o.lower()), "message": ""}
            for name, o in found}


def bench_row(case: dict) -> dict:
    o = case["ours"]
    row = {"ms_per_step": round(o["median_s"] * 1e3, 2),
           "images_per_s": round(o["images_per_s"], 1), "mfu": round(o["mfu"], 4),
           "peak_mib": round(o["peak_memory_bytes"] / 2**20)}
    if "speedup" in case:
        row.update(reference_ms=round(case["reference"]["median_s"] * 1e3, 2),
                   speedup=round(case["speedup"], 3))
    return row


def run_row(name: str, rc: int, wall: float, results: Path, history: Path) -> dict:
    """One full-profile run: done (its results file written), stopped at the budget's end (the
    last step its history logged), or failed."""
    row = {"run": name, "rc": rc, "wall_s": round(wall, 1)}
    if rc == 0 and results.exists():
        res = json.loads(results.read_text())
        row.update(status="done", elapsed_s=res["elapsed_s"], device=res["device"],
                   metric=res["metric"], last=res["last"][res["metric"]],
                   best=res["best"][res["metric"]])
        return row
    row["status"] = "stopped" if rc in (124, 137) else "failed"
    if history.exists():
        steps = [json.loads(ln)["step"] for ln in history.read_text().splitlines()
                 if ln.startswith("{") and ln.endswith("}")]
        row["steps_logged"] = max(steps, default=0)
    return row


def run(args: argparse.Namespace) -> int:
    check = Check(args)
    for name, fn in (("install", check.install), ("env", check.probe), ("tests", check.tests),
                     ("smoke", check.smoke), ("bench", check.bench),
                     ("reproduce", check.reproduce)):
        check.stage(name, fn)
    try:
        check.pack()
    except Exception:
        check.log(traceback.format_exc())
    check.state["finished"] = True
    check.save()
    check.log(check.summary())
    if not args.work:
        shutil.rmtree(check.work, ignore_errors=True)
    return 0 if all(s["status"] in ("ok", "skipped (no wheels carried)")
                    or s["status"].startswith("partial") for s in check.state["stages"]) else 1


# -- the smoke stage's own process ------------------------------------------------------------

def smoke(args: argparse.Namespace) -> int:
    """Every method of the tables in the smoke profile, through the command line's ``run``,
    one after another in this process; a row per method in ``--report``."""
    from semibook.__main__ import main as cli
    from semibook.reproduce import TABLES
    rows = []
    for task in args.tasks:
        t = TABLES[task]
        for method in t.methods:
            run_dir = Path(args.work) / f"{task}-{method}"
            argv = ["run", "--method", method, "--dataset", t.dataset, "--labels",
                    str(min(t.labels)), "--profile", "smoke", "--device", args.device,
                    "--quiet", "--json", "--overwrite", "--run-dir", str(run_dir)]
            if args.steps:
                argv += ["--steps", str(args.steps), "--eval-every", str(args.steps),
                         "--eval-size", "32"]
            t0 = time.perf_counter()
            try:
                rc = cli(argv)
            except Exception as e:
                traceback.print_exc()
                rc = f"{type(e).__name__}: {e}"
            row = {"task": task, "method": method, "rc": rc,
                   "wall_s": round(time.perf_counter() - t0, 1)}
            if (run_dir / "results.json").exists():
                res = json.loads((run_dir / "results.json").read_text())
                row.update(device=res["device"], steps=res["config"]["steps"],
                           last=res["last"][res["metric"]] if res["last"] else None)
            rows.append(row)
            Path(args.report).write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if all(r["rc"] == 0 for r in rows) else 1


# -- command line -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/gpu_check.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    prep = argparse.ArgumentParser(add_help=False)
    prep.add_argument("--into", default=str(ROOT), help="where the carried folders are made "
                      "(default: the repository's root, which the device command expects)")
    prep.add_argument("--offline", action="store_true", help="download nothing; say which "
                      "wheels are missing")
    prep.add_argument("--data-src", default=None, help="the Fashion-MNIST folder to copy "
                      "(default: where semibook finds it)")
    stages = argparse.ArgumentParser(add_help=False)
    stages.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "_build" /
                                                                      "gpu-check"),
                        help="the results folder (default: $OUT, else _build/gpu-check)")
    stages.add_argument("--budget", type=int, default=None,
                        help="seconds for all stages (default: 420; dry: 480 times 1 + "
                             "the load average per core)")
    stages.add_argument("--tasks", nargs="+", default=["classification", "segmentation"],
                        choices=["classification", "segmentation"])
    stages.add_argument("--jobs", type=int, default=None, help="full-profile runs at once")
    stages.add_argument("--max-runs", type=int, default=None, help="start at most N runs")
    stages.add_argument("--carry-root", default=None, help="where .whl and .gpu-data are "
                        "(default: the repository's root)")
    stages.add_argument("--work", default=None, help="a folder for the runs (default: a new "
                        "temporary one, removed at the end)")
    sub.add_parser("prepare", parents=[prep], help="the carried folders and the device command")
    r = sub.add_parser("run", parents=[stages], help="the stages, on the GPU")
    r.add_argument("--dry", action="store_true", help="on the CPU, tiny sizes")
    sub.add_parser("dry", parents=[prep, stages], help="prepare, then run --dry")
    s = sub.add_parser("smoke", help="(the smoke stage's process)")
    s.add_argument("--device", required=True)
    s.add_argument("--tasks", nargs="+", required=True)
    s.add_argument("--work", required=True)
    s.add_argument("--report", required=True)
    s.add_argument("--steps", type=int, default=None)
    args = p.parse_args(argv)
    if args.command == "smoke":
        return smoke(args)
    if args.command in ("prepare", "dry"):
        prepare(Path(args.into), args.offline, args.data_src)
        if args.command == "prepare":
            return 0
        args.dry, args.carry_root = True, args.carry_root or args.into
    args.carry_root = args.carry_root or str(ROOT)
    args.scale = dry_scale() if args.dry else None
    args.budget = args.budget or (round(480 * args.scale["factor"]) if args.dry else 420)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
