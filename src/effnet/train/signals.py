"""A training run stopped by SIGTERM (a scheduler's pre-emption, `kill`, torchrun shutting its
workers down) or SIGINT (Ctrl-C) finishes the optimiser step in progress, writes a checkpoint and
exits 128 + the signal's number (143 / 130) with one line saying how to continue; `--resume`
then replays the rest exactly as if nothing had happened.

A second signal of either kind does not wait: SIGINT raises KeyboardInterrupt at once, SIGTERM
kills the process with the default action. The previous checkpoint is kept either way (saves are
atomic).
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from .distributed import World, any_true

HANDLED = (signal.SIGTERM, signal.SIGINT)


class Stopped(KeyboardInterrupt):
    """Training stopped on request after saving a checkpoint; `exit_code` is 128 + signal."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum, self.exit_code = signum, 128 + signum


class StopOnSignal:
    """Context manager: while active, SIGTERM/SIGINT only set a flag that the loop polls."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # signal.signal works only there
            for s in HANDLED:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
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

    def requested(self, world: World) -> bool:
        """True on every rank when any rank was signalled (all stop after the same step)."""
        if not world.enabled:
            return self.signum is not None
        return any_true(self.signum is not None, world)

    def stopped(self, run_dir: Path, step: int, total: int) -> Stopped:
        signum = self.signum or signal.SIGTERM  # another rank's signal
        name = signal.Signals(signum).name
        return Stopped(signum, f"stopped by {name} after step {step} of {total}; checkpoint saved; "
                               f"continue with: effnet train --resume {run_dir}")


