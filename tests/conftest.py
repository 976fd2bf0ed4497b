"""The suite leaves no process behind and no test hangs for long.

* pytest becomes a child subreaper (Linux prctl), so a process orphaned by a test (a torchrun
  worker whose agent died, a daemonised server) is re-parented to pytest instead of init, and is
  still seen here.
* After each test, every live process below pytest that was not there when the test started is a
  leak: it is SIGKILLed (with its process group) and the test fails naming it. Processes a
  module- or session-scoped fixture started before the test, and whatever those start (a
  database server's per-connection backends), are the fixture's to stop; at the end of the
  session nothing may be left at all.
* pytest-timeout bounds every test (pyproject.toml: `timeout`); tests marked `slow` get
  SLOW_TIMEOUT_S unless they ask for their own. A test past its limit fails with a stack dump.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from pathlib import Path

import pytest

SLOW_TIMEOUT_S = 600
PR_SET_CHILD_SUBREAPER = 36

# torch.compile's default pool of compile-worker processes outlives the test that first compiles;
# compiling in-process keeps the process tree to what the tests start (and suits 2 cores)
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

# helpers Python starts once and keeps for the interpreter's life, not started by a test
_SHARED_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _become_subreaper() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


_become_subreaper()


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def _live_descendants(owned: set[int] = frozenset()) -> dict[int, str]:
    """pid -> command line of every process below this one that is not a zombie, leaving out the
    processes in `owned` and everything below them."""
    found: dict[int, str] = {}
    todo = _children(os.getpid())
    while todo:
        pid = todo.pop()
        if pid in owned:
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] == "Z":  # dead, waiting to be reaped: not running
            continue
        todo += _children(pid)
        if not any(h in cmd for h in _SHARED_HELPERS):
            found[pid] = cmd.strip()
    return found


def _kill(pids) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            pgid = os.getpgid(pid)
            if pgid != os.getpgrp():
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _leaks(before: set[int], grace_s: float = 2.0) -> dict[int, str]:
    """Processes not in `before` still alive after a short grace (a child may be exiting)."""
    deadline = time.monotonic() + grace_s
    while True:
        left = _live_descendants(owned=before)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _report(left: dict[int, str]) -> str:
    return "; ".join(f"pid {p}: {c[:160]}" for p, c in sorted(left.items()))


@pytest.fixture(autouse=True)
def no_process_outlives_its_test():
    before = set(_live_descendants())
    yield
    left = _leaks(before)
    if left:
        _kill(left)
        pytest.fail(f"the test left {len(left)} process(es) running (now killed): {_report(left)}",
                    pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_session():
    yield
    left = _leaks(set(), grace_s=5.0)
    if left:
        _kill(left)
        pytest.fail(f"the suite left {len(left)} process(es) running (now killed): {_report(left)}",
                    pytrace=False)


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))
