"""Ctrl-C during training, taken at the end of a step.

Python's own handler raises ``KeyboardInterrupt`` in whatever code runs when the signal comes,
and where that is a finaliser (a ``__del__``, a weakref callback) Python prints the exception
and carries on: the run goes on as if Ctrl-C had not been pressed. While the loop trains,
:func:`deferred` replaces that handler: the first Ctrl-C is recorded (and said on a
terminal), the loop raises ``KeyboardInterrupt`` itself at the end of the step
(:meth:`Deferred.check`), and a second Ctrl-C raises at once. The notice goes to a terminal
only, so that a piped or logged run still ends in the command line's one line. Outside the
main thread, or where someone else's handler is installed, nothing is changed."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

NOTICE = b"\nCtrl-C: stopping at the end of this step (press it again to stop now)\n"


class Deferred:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:  # the SIGINT handler
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if os.isatty(2):  # os.write, not print: the handler may run inside a write to stderr
            os.write(2, NOTICE)

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` here if Ctrl-C was pressed since the loop began."""
        if self.requested:
            raise KeyboardInterrupt


@contextmanager
def deferred() -> Iterator[Deferred]:
    state = Deferred()
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield state
        return
    old = signal.signal(signal.SIGINT, state)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, old)
