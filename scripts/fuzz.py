#!/usr/bin/env python
"""The long fuzzing run: the properties of tests/test_fuzz.py with many more examples each and a
fresh random seed per run (the test suite runs a few derandomised examples).

    python scripts/fuzz.py                 # 2,000 examples per property
    python scripts/fuzz.py -n 20000 -k weights

A failure prints hypothesis' smallest failing input; turn it into a regression test in
tests/test_fuzz.py (`test_found_by_fuzzing_*`) and fix the code.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--examples", type=int, default=2000, help="examples per property")
    p.add_argument("-k", default=None, help="only properties whose name matches (pytest -k)")
    args = p.parse_args(argv)
    env = {**os.environ, "EFFNET_FUZZ_EXAMPLES": str(args.examples),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::UserWarning",
           "--durations=0", str(ROOT / "tests" / "test_fuzz.py")] + (["-k", args.k] if args.k else [])
    return subprocess.call(cmd, env=env, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
