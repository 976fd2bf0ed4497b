"""The suite's own guards (tests/conftest.py) work: a test that leaves a process running fails and
the process is killed, an orphaned grandchild is seen too, and a test past its time limit fails
with a stack dump instead of hanging."""

import os
import re
import shutil
import sys
from pathlib import Path

import procs

_INNER = '''
import subprocess, time
import pytest

def test_leaves_a_child():
    subprocess.Popen(["sleep", "1000"])

def test_leaves_an_orphan():
    subprocess.run(["bash", "-c", "sleep 1001 & disown; exit 0"])

def test_cleans_up():
    with subprocess.Popen(["sleep", "1002"]) as p:
        p.kill()

@pytest.mark.timeout(1)
def test_hangs():
    time.sleep(30)
'''


# exactly the inner tests' sleeps: a loose prefix once matched a `sleep 100` of the shell that
# ran the suite
_INNER_SLEEPS = {f"sleep\x00{n}\x00".encode() for n in (1000, 1001, 1002)}


def _cmdline(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended
        return b""


def _sleepers() -> list[str]:
    return [cmd.decode(errors="replace") for cmd in map(_cmdline, Path("/proc").glob("[0-9]*/cmdline"))
            if cmd in _INNER_SLEEPS]


def test_a_leaked_or_orphaned_process_fails_its_test_and_is_killed_and_a_hang_times_out(tmp_path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(_INNER)
    done = procs.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
                      str(tmp_path)], cwd=tmp_path, timeout=120,
                      env={**os.environ, "COLUMNS": "300"})  # short summary lines untruncated
    out = done.stdout
    assert done.returncode == 1, out
    for name in ("test_leaves_a_child", "test_leaves_an_orphan"):
        assert f"ERROR test_inner.py::{name} - Failed: the test left 1 process" in out
    # two leaks, one process each (pytest may repeat a message in its short summary: count pids)
    killed = re.findall(r"the test left 1 process\(es\) running \(now killed\): pid (\d+)", out)
    assert len(set(killed)) == 2, out
    assert "sleep 1000" in out and "sleep 1001" in out  # the orphan was re-parented to pytest
    assert "PASSED test_inner.py::test_cleans_up" in out
    assert "FAILED test_inner.py::test_hangs - Failed: Timeout (>1.0s) from pytest-timeout" in out
    assert "time.sleep(30)" in out  # where it hung
    assert not _sleepers()
