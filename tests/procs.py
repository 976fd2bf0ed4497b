"""Processes a test starts. Each runs in a session of its own (its own process group), and the
whole group is SIGKILLed on every way out of the test: a normal end, a failed assertion, a
timeout (pytest-timeout included), an exception. A torchrun agent killed on its own would leave
its workers running; killing the group takes them too. tests/conftest.py fails any test that
leaves a process behind anyway."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator


def popen(cmd: list[str], **kw) -> subprocess.Popen:
    """subprocess.Popen in a new session; pair it with `kill_group` (or use `started`)."""
    return subprocess.Popen(cmd, start_new_session=True, **kw)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL everything in `proc`'s process group, then reap `proc`."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
    proc.wait()


@contextlib.contextmanager
def started(cmd: list[str], **kw) -> Iterator[subprocess.Popen]:
    proc = popen(cmd, **kw)
    try:
        yield proc
    finally:
        kill_group(proc)


def run(cmd: list[str], timeout: float = 300, check: bool = False, capture_output: bool = True,
        text: bool = True, input: str | None = None, **kw) -> subprocess.CompletedProcess:
    """subprocess.run, with the child's whole process group killed however the call ends (on a
    timeout subprocess.run kills only the child)."""
    if capture_output:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
    if input is not None:
        kw["stdin"] = subprocess.PIPE
    with started(cmd, text=text, **kw) as proc:
        out, err = proc.communicate(input, timeout=timeout)
        code = proc.wait()
    done = subprocess.CompletedProcess(cmd, code, out, err)
    if check:
        done.check_returncode()
    return done


def finish_all(started_procs, timeout: float = 300) -> tuple[list[tuple[str, str]], list[int]]:
    """(stdout, stderr) and exit code of each process, each run to its end; every one's group is
    killed on the way out."""
    started_procs = list(started_procs)
    try:
        results = [p.communicate(timeout=timeout) for p in started_procs]
    finally:
        for p in started_procs:
            kill_group(p)
    return results, [p.returncode for p in started_procs]
