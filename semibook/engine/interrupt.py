"""Ctrl-C during training, taken at the end of a step.

Python's own handler raises ``KeyboardInterrupt`` in whatever code runs when the signal comes,
and where that is a finaliser (a ``__del__``, a weakref callback) Python prints the exception
and carries on: the run goes on as if Ctrl-C had not been pressed. While the loop trains,
:func:`deferred` replaces that handler: the first Ctrl-C is recorded (and said on a
terminal), the loop raises ``KeyboardInterrupt`` itself at the end of the step
(:meth:`Deferred.check`), and a second Ctrl-C raises at once. The notice goes to a terminal
only, so that a piped or logged run still ends in the command line's one line. Outside the
main thread, or where someone else's handler is installed, nothing is changed.

SIGTERM (``kill``, a job scheduler's stop) is taken the same way: the command line installs
:func:`terminate` for it (``Terminated``, a ``KeyboardInterrupt``, raised at once), and the loop
defers it to the end of the step as it defers Ctrl-C."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

NOTICE = b"\nCtrl-C: stopping at the end of this step (press it again to stop now)\n"


class Terminated(KeyboardInterrupt):
    """SIGTERM: stopped as Ctrl-C stops a run; the command line exits with status 143."""


def terminate(signum, frame) -> None:
    """The command line's SIGTERM handler outside the training loop: stop now."""
    raise Terminated


class Deferred:
    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None

    def __call__(self, signum, frame) -> None:  # the SIGINT and SIGTERM handler
        stop = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        if self.requested:
            raise stop
        self.requested, self.signal = True, signum
        if os.isatty(2) and signum == signal.SIGINT:  # os.write: it may run inside a write
            os.write(2, NOTICE)

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` (``Terminated`` for SIGTERM) here if Ctrl-C was pressed
        (or SIGTERM came) since the loop began."""
        if self.requested:
            raise Terminated if self.signal == signal.SIGTERM else KeyboardInterrupt


@contextmanager
def deferred() -> Iterator[Deferred]:
    state = Deferred()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    ours = {signal.SIGINT: (signal.default_int_handler,), signal.SIGTERM: (terminate,)}
    old = {s: signal.getsignal(s) for s in ours}
    taken = [s for s in ours if any(old[s] is h for h in ours[s])]
    for s in taken:
        signal.signal(s, state)
    try:
        yield state
    finally:
        for s in taken:
            signal.signal(s, old[s])
