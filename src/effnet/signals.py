"""SIGTERM (a scheduler's pre-emption, `kill`, torchrun shutting its workers down) and SIGINT
(Ctrl-C) stop long work at its next safe point instead of wherever they land.

While a `StopOnSignal` is active a signal only sets a flag, which the work polls where stopping
loses nothing: the training loop after an optimiser step (it saves a checkpoint first), a search
between trials, before a claim, while it waits. The work then raises `Stopped`, which the CLI
turns into one line saying how to continue and exit code 128 + the signal's number (143 / 130).
A KeyboardInterrupt raised where the signal happens to land can be lost: inside a finaliser or a
gc callback (SQLAlchemy has some) Python prints it and carries on.

Nested, a StopOnSignal is the outermost one: a search's trials train under the search's handler,
so a signal is recorded once for the whole command whichever part runs when it arrives.

A second signal of either kind does not wait: SIGINT raises KeyboardInterrupt at once, SIGTERM
kills the process with the default action.

This module imports no torch: the CLI installs its handler before the seconds of imports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

HANDLED = (signal.SIGTERM, signal.SIGINT)


class Stopped(KeyboardInterrupt):
    """Work stopped on request, where it could; `exit_code` is 128 + signal. The message reads
    "stopped by SIGINT <how>", `how` saying where it stopped and how to continue."""

    def __init__(self, signum: int, how: str):
        super().__init__(f"stopped by {signal.Signals(signum).name} {how}")
        self.signum, self.exit_code = signum, 128 + signum


class StopOnSignal:
    """Context manager: while active, SIGTERM/SIGINT only set a flag that the work polls."""

    _active: ClassVar[StopOnSignal | None] = None  # the one whose handlers are installed

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignal:
        if StopOnSignal._active is not None:
            return StopOnSignal._active  # one flag: a signal that came before us is not forgotten
        if threading.current_thread() is threading.main_thread():  # signal.signal works only there
            for s in HANDLED:
                self._previous[s] = signal.signal(s, self._handle)
            StopOnSignal._active = self
        return self

    def __exit__(self, *exc) -> None:
        if StopOnSignal._active is self:
            StopOnSignal._active = None
        for s, old in self._previous.items():
            signal.signal(s, old)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
            return
        self.__exit__()  # the second signal: no more waiting
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def requested(self) -> bool:
        """True when a signal came (a distributed loop ORs this over its ranks, so that all of
        them stop after the same step)."""
        return self.signum is not None

    def stopped(self, how: str) -> Stopped:
        return Stopped(self.signum or signal.SIGTERM, how)  # no signal here: another rank's

    def check(self, how: str = "") -> None:
        """A safe point: raise Stopped if a signal came."""
        if self.signum is not None:
            raise self.stopped(how)

    def sleep(self, seconds: float) -> None:
        """time.sleep that a signal cuts short (Python would resume a plain sleep after the
        handler ran); the caller checks next."""
        end = time.monotonic() + seconds
        while self.signum is None and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))


@contextlib.contextmanager
def stop_on_signal(how: str) -> Iterator[StopOnSignal]:
    """Run work that polls the flag at its safe points under one StopOnSignal. However it stops (a
    safe point that saw the flag, a nested trainer's Stopped, a second Ctrl-C) it raises one
    Stopped that says `how` to continue; a signal that arrives after the last safe point still
    stops it: the flag is read again once the handlers are restored."""
    try:
        with StopOnSignal() as stop:
            yield stop
    except KeyboardInterrupt as e:
        raise Stopped(getattr(e, "signum", signal.SIGINT), how) from None
    stop.check(how)
