"""The commands README.md and docs/USING.md show, as a newcomer runs them after the set-up.
``as_printed``: each exactly as printed (the bench at its tiny sizes), for the clean-clone test
of tests/test_readme.py. ``runnable``: turned into the forms that finish here for
tests/fresh_clone.sh: training in the smoke profile (the full profile is hours on a CPU),
the bench and the GPU check at their tiny sizes. Commands that need what this project does
not have (the user's CIFAR-10, VOC or Cityscapes; a GPU's archive) are listed with the
reason they are left out. ``python tests/readme_commands.py`` prints one runnable command a
line (tests/fresh_clone.sh runs them); ``--skipped`` prints the others with their reasons."""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
# the pages a user follows: README.md and the reference it sends them to (docs/DEVELOPING.md
# holds the maintainers' commands, which rewrite committed files on purpose)
USER_PAGES = ("README.md", "docs/USING.md")
NEEDS_DATA = {"cifar10": "the user's CIFAR-10", "voc": "the user's PASCAL VOC",
              "cityscapes": "the user's Cityscapes"}


# What the clean-clone test (tests/test_readme.py) appends to a bench command as printed: the
# smallest sizes (one quick case, one step, no reference); the options that say where the report
# goes are left as printed.
BENCH_TINY = " --quick --cases supervised-full --steps 1 --warmup 0 --no-reference --curve 0"
DEMO_TINY = " --seeds 0 --pool 2000"  # the demo on one seed and a small pool


def shown(readme: str) -> list[str]:
    """Every command line of the README's bash blocks (comments stripped), then the
    ``.venv/bin/python -m semibook ...`` commands written inline in its text."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].split(" # ")[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    text = re.sub(r"```.*?```", "", readme, flags=re.S)
    inline = [" ".join(c.split()) for c in  # an inline command may break across lines
              re.findall(r"`(\.venv/bin/python\s+-m\s+semibook[^`]*)`", text)]
    out += [c for c in inline if c not in out]
    return out


SYSTEM = (None, "installs system packages (.ci/run does where they are missing)")


def _not_here(cmd: str) -> tuple[None, str] | None:
    """(None, why) for a command neither walk runs: one that installs system packages, needs
    the user's data, or is a fragment of a longer command in the text; else None."""
    if cmd.startswith(("sudo ", "apt-get ")):
        return SYSTEM
    if " -m semibook " in f"{cmd} ":
        dataset = re.search(r"--dataset (\S+)", cmd)
        if dataset and dataset.group(1) in NEEDS_DATA:
            return None, f"needs {NEEDS_DATA[dataset.group(1)]}"
        if cmd.rstrip().endswith("-m semibook"):
            return None, "a fragment of a longer command in the text"
    return None


def runnable(cmd: str) -> tuple[str | None, str]:
    """(the command as it runs here, or None, why)."""
    skip = _not_here(cmd)
    if skip:
        return skip
    if " -m semibook " in f"{cmd} ":
        if " run " in cmd or " reproduce " in cmd:
            if "--dry-run" in cmd:
                return cmd, "lists only"
            cmd = re.sub(r"--profile \S+", "--profile smoke", cmd) if "--profile" in cmd \
                else f"{cmd} --profile smoke"
            if " run " in cmd:
                cmd += " --yes"
            return cmd, "smoke profile"
        if re.search(r" bench( |$)", cmd):  # where the report goes, as printed
            return cmd + BENCH_TINY, "tiny sizes"
        return cmd, "as shown"
    if cmd.startswith("make lab"):
        return None, "a server that runs until stopped (tests/test_make.py starts and stops it)"
    if cmd.startswith("make gpu-check"):
        return "make gpu-check DRY=1", "the check's CPU dry run"
    if cmd.startswith("tar ") and "gpu-check" in cmd:
        return None, "unpacks a real GPU check's archive"
    if cmd.startswith("make book") or cmd.startswith("make test"):
        return None, "run first by tests/fresh_clone.sh"
    return cmd, "as shown"


def as_printed(cmd: str) -> tuple[str | None, str]:
    """(the command as the clean-clone test runs it, or None, why): each command exactly as
    printed, except that bench and demo take BENCH_TINY and DEMO_TINY and make runs with the
    test's environment (``-o .venv/.installed``, not reinstalled); what needs the user's data,
    a GPU, a network or the long book build is left to tests/fresh_clone.sh or to its own
    test."""
    skip = _not_here(cmd)
    if skip:
        return skip
    if " -m semibook " in f"{cmd} ":
        if re.search(r" bench( |$)", cmd):
            return cmd + BENCH_TINY, "as printed, at the bench's tiny sizes"
        if re.search(r" demo( |$)", cmd):
            return cmd + DEMO_TINY, "as printed, on one seed and a small pool"
        return cmd, "as printed"
    if cmd.startswith("make lab"):
        return None, "its own test (tests/test_lab.py): a server to start and stop"
    if cmd.startswith(("make book", "make test", "make gpu-", "tar ")):
        return None, "run by tests/fresh_clone.sh (minutes, a network or a GPU)"
    if cmd.startswith("make "):
        return "make -o .venv/.installed " + cmd[len("make "):], "as printed"
    return cmd, "as printed"


def clean_clone(src: Path, dest: Path, venv: Path) -> Path:
    """A fresh repository at ``dest`` holding the working tree of ``src`` as it is (tracked
    files and untracked ones git does not ignore) in one commit, with ``.venv`` linked to
    ``venv``: what a newcomer's clone is, uncommitted changes included."""
    import shutil
    import subprocess
    git = lambda *a, cwd=dest: subprocess.run(["git", *a], cwd=cwd, check=True,
                                             capture_output=True, text=True).stdout
    files = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=src)
    dest.mkdir(parents=True)
    for name in filter(None, files.split("\0")):
        if (src / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dest / name)
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-q", "-m", "clone")
    (dest / ".venv").symlink_to(venv)
    with open(dest / ".git" / "info" / "exclude", "a") as f:
        f.write(".venv\n")  # a link, which .gitignore's directory pattern .venv/ does not match
    return dest


def user_commands(root: Path = README.parent) -> list[str]:
    """The commands of the user's pages, in order, each once."""
    out: list[str] = []
    for page in USER_PAGES:
        out += [c for c in shown((root / page).read_text()) if c not in out]
    return out


def main() -> None:
    rows, seen = [], set()
    for c in user_commands():
        cmd, why = runnable(c)
        if cmd is None or cmd not in seen:
            rows.append((c, cmd, why))
            seen.add(cmd)
    for shown_cmd, cmd, why in rows:
        if "--skipped" in sys.argv and cmd is None:
            print(f"{shown_cmd}    # left out: {why}")
        elif "--skipped" not in sys.argv and cmd is not None:
            print(cmd)


if __name__ == "__main__":
    main()
