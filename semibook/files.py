"""Files written atomically: a temporary file of the writer's own beside the target, fsync,
rename. A process killed at any moment leaves the previous complete file or the new one, never
a torn one; writers of one path at once each write a whole file and the last rename wins.
Near the bottom of the package (it imports nothing of it), so data, engine and commands share
it."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

TMP_SUFFIX = ".tmp"


def temporary_name(name: str) -> re.Pattern:
    """The pattern of the temporary files :func:`atomic_write` makes for the file ``name``:
    ``<name>.<unique>.tmp``, one per writer."""
    return re.compile(re.escape(name) + r"\.[A-Za-z0-9_]+" + re.escape(TMP_SUFFIX))


def _open_temporary(path: Path, binary: bool):
    """A new temporary file beside ``path``, unique to this writer (created exclusively, never
    through a link), with the permissions a plain ``open`` would give it."""
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=TMP_SUFFIX, dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    return os.fdopen(fd, "wb" if binary else "w"), Path(name)


def _replace(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some filesystems refuse fsync on a directory
        pass


class _Writes:
    """A file object whose failed writes are remembered: torch.save's zip writer turns the
    OSError of a full disk into a RuntimeError that names no file and no cause."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name):  # tell, seek, flush, ...: the file's own
        return getattr(self.f, name)


def atomic_write(path: Path, binary: bool, write) -> None:
    """Write ``path`` through a temporary file of this writer's own (so concurrent writers of
    one path each write whole files, and the last rename wins). A write that fails (a full disk,
    a read-only folder, Ctrl-C) removes the temporary file and leaves ``path`` as it was; only
    a killed process leaves a torn temporary file (a run folder's are removed when the folder
    is next claimed)."""
    path = Path(path)
    tmp = None
    try:
        f, tmp = _open_temporary(path, binary)
        with f:
            out = _Writes(f)
            try:
                write(out)
            except RuntimeError:
                if out.error is not None:  # the disk's own error, not torch's wrapping of it
                    raise out.error from None
                raise
            f.flush()
            os.fsync(f.fileno())
        _replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        if isinstance(e, OSError) and (e.filename is None or str(e.filename).endswith(
                TMP_SUFFIX)):  # name the file written, not its temporary name
            e.filename = str(path)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file (config, results) so that readers never see half of it."""
    atomic_write(path, False, lambda f: f.write(text))


