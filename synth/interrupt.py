"""Ctrl-C as a request to stop at the next safe point, instead of an exception raised wherever the main
thread happens to be (inside h5py, a lock of the process pool, a queue's feeder: places where Python can
only print "Exception ignored" and carry on)."""

from __future__ import annotations

import signal
import threading


class StopRequested(Exception):
    """Raised by StopOnSigint.check() after a Ctrl-C (SIGINT) arrived."""


class StopOnSigint:
    """While active, the first SIGINT only sets a flag that `check()` turns into StopRequested at a point the
    caller chose; a second SIGINT raises KeyboardInterrupt at once (the way out if a safe point never comes).

    with StopOnSigint() as stop:
        for item in work:
            stop.check()
            ...
    Off the main thread (where Python cannot install handlers) it installs nothing and never stops.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _on_sigint(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise StopRequested

    def __enter__(self) -> StopOnSigint:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
