#!/usr/bin/env bash
# The newcomer's path from a fresh clone of this repository: `make book`, `make test`, then every
# command README.md and docs/USING.md show, each in the form that finishes here (tests/readme_commands.py: the
# smoke profile for training; commands that need the user's datasets or a GPU are listed as
# left out). Stops at the first command that fails. Run folders and results go to a temporary
# folder, never into the clone. 34 minutes on this project's 2-core CPU on 2026-12-01.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
git clone -q "$src" "$work/repo"
cd "$work/repo"
step() { local t0=$SECONDS; "$@"; echo "TIME $(( SECONDS - t0 )) s: $*" | tee -a "$work/times.txt"; }
# the environment first (creates .venv, installs requirements.txt), then what `make book` adds
# to it (MathJax, the widget JavaScript, the build), so the README can give each step's time
step make .venv/.installed
step make book
step make test
# the README's commands write their run folders, results and new splits outside the clone
export SEMIBOOK_RUNS="$work/runs" SEMIBOOK_RESULTS="$work/results" SEMIBOOK_SPLITS="$work/splits"
mkdir -p "$SEMIBOOK_RESULTS"
echo "left out:"; python3 tests/readme_commands.py --skipped | sed 's/^/  /'
python3 tests/readme_commands.py | while IFS= read -r cmd; do
  echo "+ $cmd"
  step bash -c "$cmd" < /dev/null
done
git status --porcelain --untracked-files=all | grep -v '^?? _build/\|^?? .venv/\|^?? _widgets/' \
  && { echo "the commands left files in the clone (above)"; exit 1; } || true
echo "fresh clone: every command exited 0 ($work); times:"; cat "$work/times.txt"
