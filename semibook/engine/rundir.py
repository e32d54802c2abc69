"""Whose a run folder is, and who works in it.

A run folder is semibook's when it holds nothing but the names semibook writes (:data:`OWN`,
and the temporary files of those) and either semibook's marker (:data:`MARKER`, the first file a
run writes, atomically) or, for folders written before the marker existed, a ``config.json``
that semibook wrote (:func:`semibook.config.is_semibook_config`): file names alone never make a
folder semibook's. None of its files may be a symbolic link (semibook would write or read
through it, outside the folder). semibook never writes into, nor deletes from, any other
folder: ``--overwrite`` removes only semibook's own files of its own folders. One process at a
time works in a run folder: it holds an exclusive ``flock`` on :data:`LOCK` until it ends (the
kernel frees the lock of a process that died, so a stale lock cannot exist).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

from ..checks import ConfigError
from ..config import is_semibook_config
from ..files import atomic_write_text, temporary_name

MARKER = "semibook-run.json"
LOCK = "run.lock"
DATA_FILES = ("config.json", "checkpoint.pt", "history.jsonl", "results.json")
# temporary files: this version's, one per writer, and the single name of earlier versions
TEMPORARY = tuple(temporary_name(n) for n in (MARKER, *DATA_FILES)) + tuple(
    re.compile(re.escape(n + ".tmp")) for n in (MARKER, *DATA_FILES))
OWN = frozenset((MARKER, LOCK, *DATA_FILES))
MARKER_TEXT = json.dumps({"semibook": "run folder", "format": 1}) + "\n"
NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary file of a run folder's own file."""
    return any(t.fullmatch(name) for t in TEMPORARY)


def _is_own(name: str) -> bool:
    return name in OWN or is_temporary(name)


def _link(path: Path) -> ConfigError:
    try:
        to = f" (to {os.readlink(path)})"
    except OSError:
        to = ""
    return ConfigError(f"{path} is a symbolic link{to}; semibook never reads or writes a run "
                       f"folder's files through a link: remove the link, or choose another "
                       f"--run-dir")


def _listing(names: list[str], most: int = 4) -> str:
    shown = ", ".join(sorted(names)[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _owned_names(run_dir: Path) -> list[str]:
    """The names in ``run_dir`` after checking that all of them are semibook's, none a link
    (one line naming the others when not)."""
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a folder; choose another --run-dir")
    try:
        entries = list(os.scandir(run_dir))
    except OSError as e:
        raise ConfigError(f"{run_dir}: cannot list the run folder ({e.strerror}); make it "
                          f"readable or choose another --run-dir") from None
    links = sorted(e.name for e in entries if e.is_symlink() and _is_own(e.name))
    if links:
        raise _link(run_dir / links[0])
    foreign = [e.name for e in entries if not _is_own(e.name) or e.is_dir(follow_symlinks=False)]
    if foreign:
        raise ConfigError(f"{run_dir} holds files semibook did not write ({_listing(foreign)}); "
                          f"semibook writes only into an empty folder or its own run folder: "
                          f"choose another --run-dir")
    names = [e.name for e in entries]
    if MARKER in names:
        try:
            ours = (run_dir / MARKER).read_text() == MARKER_TEXT
        except (OSError, UnicodeDecodeError):
            ours = False
        if not ours:
            raise ConfigError(f"{run_dir / MARKER} is not semibook's run-folder marker; choose "
                              f"another --run-dir")
    elif LOCK in names and not _lock_text_is_ours(run_dir / LOCK):
        raise ConfigError(f"{run_dir / LOCK} is not a semibook lock file (it holds more than a "
                          f"process id) and the folder has no {MARKER}; semibook leaves it "
                          f"alone: choose another --run-dir")
    return names


def _lock_text_is_ours(path: Path) -> bool:
    """A lock file as semibook leaves it: empty, or a process id and a newline."""
    try:
        with open(path, "rb") as f:
            text = f.read(64)
    except OSError:
        return False
    return re.fullmatch(rb"[0-9]*\n?", text) is not None


def _read_config(run_dir: Path) -> tuple[Any, str | None]:
    """The folder's config.json as JSON (None and the reason when there is none, or it does not
    read as a JSON object)."""
    path = run_dir / "config.json"
    try:
        old = json.loads(path.read_text())
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
        return old, None
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        return None, f"{type(e).__name__}: {' '.join(str(e).split())[:120]}"


def holder(run_dir: Path) -> str:
    """Who holds the folder's lock, as the lock file says (its process id), for messages."""
    try:
        pid = (run_dir / LOCK).read_text().strip()
    except (OSError, UnicodeDecodeError):
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


def _busy(run_dir: Path) -> ConfigError:
    return ConfigError(f"{run_dir} is in use by {holder(run_dir)} (it holds the lock "
                       f"{run_dir / LOCK}); wait for it to end, or choose another --run-dir")


def probe_lock(run_dir: Path) -> None:
    """Refuse now when another process works in ``run_dir`` (creates nothing)."""
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY | NO_FOLLOW)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _link(run_dir / LOCK) from None
        return  # no lock file: nobody has worked here yet
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(run_dir) from None
    finally:
        os.close(fd)


def inspect(run_dir: Path, resume: bool, overwrite: bool,
            differs: Callable[[dict[str, Any]], list[str]]) -> bool:
    """Check ``run_dir`` for a run (``differs(old config)`` names the fields that forbid
    continuing it); raise one line when it may not be used as asked. Returns whether the folder
    holds a run's files (which ``--overwrite`` then removes). Reads only."""
    if not run_dir.exists():
        return False
    names = _owned_names(run_dir)
    data = [n for n in DATA_FILES if n in names]
    if not data:
        return False
    old, why = _read_config(run_dir)
    cfg_path = run_dir / "config.json"
    if MARKER not in names and not is_semibook_config(old):
        raise ConfigError(f"{run_dir} holds {', '.join(data)} but neither semibook's marker "
                          f"{MARKER} nor a config.json that semibook wrote, so they may be "
                          f"another program's; semibook leaves them alone: choose another "
                          f"--run-dir (or move the files away yourself)")
    if overwrite:
        return True
    if why == "missing":
        raise ConfigError(f"{run_dir} holds semibook run files ({', '.join(data)}) but no "
                          f"config.json, so whose run they are is not known; pass --overwrite "
                          f"to start again, or choose another --run-dir")
    if old is None:
        raise ConfigError(f"{cfg_path}: not a readable config file ({why}); pass --overwrite "
                          f"to start again, or choose another --run-dir")
    diff = differs(old)
    if diff:
        raise ConfigError(f"{run_dir} holds a run with a different config (differs in: "
                          f"{', '.join(diff)}); pass --overwrite to replace it")
    if not resume:
        raise ConfigError(f"{run_dir} already holds this run; pass --resume to continue it or "
                          f"--overwrite to start again")
    return True


class RunLock:
    """The exclusive lock of one run folder, held from :func:`claim` until :meth:`release`
    (or the process's end)."""

    def __init__(self, run_dir: Path, created_dir: bool = False):
        self.run_dir, self.path, self.created_dir = run_dir, run_dir / LOCK, created_dir
        self.created = not self.path.exists()
        while True:
            try:
                self.fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | NO_FOLLOW,
                                              0o644)
            except OSError as e:
                if e.errno == errno.ELOOP:  # a link made since the folder was inspected
                    raise _link(self.path) from None
                raise
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.release()
                raise _busy(run_dir) from None
            try:  # the file locked must still be the folder's lock file (see release)
                if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            self.release()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Free the lock. A lock file this process created in a folder where it then wrote
        nothing (a refused run) is removed, with the folder when this process created it."""
        if self.fd is None:
            return
        if self.created and not (self.run_dir / MARKER).exists():
            try:
                self.path.unlink()  # before the lock is freed: a waiting process re-opens
                if self.created_dir:
                    self.run_dir.rmdir()
            except OSError:
                pass
        os.close(self.fd)  # closing the last descriptor frees the flock
        self.fd = None


def claim(run_dir: Path, resume: bool, overwrite: bool,
          differs: Callable[[dict[str, Any]], list[str]]) -> RunLock:
    """Take ``run_dir`` for this process: create it if needed, lock it, check it again under the
    lock (:func:`inspect`), remove the temporary files a killed process left and, for
    ``overwrite``, semibook's files of the run it held. The caller writes the marker
    (:func:`mark`) before anything else of the run."""
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir, created)
    try:
        held = inspect(run_dir, resume, overwrite, differs)
        for n in os.listdir(run_dir):  # nobody else works here: a temporary file is torn
            if is_temporary(n) or (held and overwrite and n in (MARKER, *DATA_FILES)):
                (run_dir / n).unlink(missing_ok=True)
    except BaseException:
        lock.release()
        raise
    return lock


def mark(run_dir: Path) -> None:
    """Write the marker (a folder of an older semibook gets it on resume)."""
    if not (run_dir / MARKER).exists():
        atomic_write_text(run_dir / MARKER, MARKER_TEXT)
