"""Helpers shared by the benchmark scripts: the shared data sets and BENCHMARKS.md sections."""

from __future__ import annotations

import os
import shutil
import tarfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CIFAR_ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
CLOTHING_ARCHIVE = ROOT.parent / "shared" / "data" / "clothing-small.tar.gz"


def extract_archive(archive: Path, cache: Path) -> Path:
    """The whole archive extracted once under `cache`, published by an atomic rename."""
    dest = cache / archive.name.removesuffix(".tar.gz")
    if (dest / "DONE").is_file():
        return dest
    tmp = cache / f".{dest.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(tmp, filter="data")
    (tmp / "DONE").write_text("ok\n")
    try:
        os.replace(tmp, dest)
    except OSError:  # another run published it first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def extract_subset(archive: Path, cache: Path, train_per_class: int, val_per_class: int) -> Path:
    """DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg with the first N files of each class
    (the archive lists them in order); extracted once, published by an atomic rename."""
    dest = cache / f"cifar10-jpeg-{train_per_class}-{val_per_class}"
    if (dest / "DONE").is_file():
        return dest
    tmp = cache / f".{dest.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    limits = {"train": train_per_class, "test": val_per_class}
    taken: Counter = Counter()
    with tarfile.open(archive, "r:gz") as tar:
        for m in tar:
            parts = Path(m.name).parts
            if not m.isfile() or len(parts) != 3 or parts[0] not in limits:
                continue
            split, cls, fname = parts
            if taken[split, cls] >= limits[split] or not fname.lower().endswith(".jpg"):
                continue
            out = tmp / ("val" if split == "test" else "train") / cls / fname
            out.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            out.write_bytes(src.read())
            taken[split, cls] += 1
    (tmp / "DONE").write_text("ok\n")
    cache.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, dest)
    except OSError:  # another run published it first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def split_view(root: Path, cache: Path, name: str, val: str = "test") -> Path:
    """DIR/train and DIR/val (links to `root`/train and `root`/`val`), as effnet reads a folder."""
    view = cache / name
    if not (view / "val").is_dir():
        view.mkdir(parents=True, exist_ok=True)
        for link, split in (("train", "train"), ("val", val)):
            if not (view / link).is_symlink():
                (view / link).symlink_to(root / split, target_is_directory=True)
    return view


def machine() -> str:
    """CPU model, cores and memory of this machine, as one line."""
    import platform

    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in
             (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []) if line.startswith("model name")]
    model = names[0] if names else platform.processor() or platform.machine()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def stamp(command: str) -> str:
    """The line every section starts with: git commit (marked when the tree has uncommitted
    changes under src/ or benchmarks/ other than results, whose numbers no commit reproduces),
    command, machine, date."""
    import datetime as dt
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short=10", "HEAD") or "unknown"
    # benchmarks/results is what the scripts write: one script's output must not mark the next one's run
    if git("status", "--porcelain", "--", "src", "benchmarks", ":!benchmarks/results"):
        commit += " + uncommitted changes (not reproducible from a commit)"
    return (f"Commit `{commit}`; command `{command}`; {machine()}; "
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.")


def mean_std(xs: list[float]) -> str:
    import statistics

    return f"{statistics.mean(xs):.2f} +- {statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"


def verdict(a: list[float], b: list[float], unit: str = "points") -> str:
    """a vs b, seed-paired: a verdict only when the mean difference exceeds the paired spread."""
    import statistics

    diff = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.mean(diff)
    spread = statistics.stdev(diff) if len(diff) > 1 else float("inf")
    if abs(mean) > spread:
        return f"{'higher' if mean > 0 else 'lower'} by {mean:+.2f} {unit} (paired spread {spread:.2f})"
    return f"{mean:+.2f} {unit}, within the paired spread {spread:.2f}: no verdict"


def write_section(path: Path, name: str, body: str, replaces: tuple[str, ...] = ()) -> None:
    """Replace (or append) the `<!-- BEGIN name -->` ... `<!-- END name -->` section, atomically.
    Sections named in `replaces` (an older layout of the same script's output) go: the first one
    found gives the new section its place."""
    import fcntl

    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    # scripts run side by side each rewrite the whole file: one at a time, or a section is lost
    with open(path.with_suffix(".md.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _replace_section(path, begin, end, body, replaces)


def _replace_section(path: Path, begin: str, end: str, body: str, replaces: tuple[str, ...] = ()) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n\nEach section is written by the script it names.\n"
    for old in replaces:  # the first one found becomes the new section's place
        old_begin, old_end = f"<!-- BEGIN {old} -->", f"<!-- END {old} -->"
        if old_begin in text and old_end in text:
            head, rest = text.split(old_begin, 1)
            placeholder = "" if begin in text else f"{begin}\n{end}\n\n"
            text = head + placeholder + rest.split(old_end, 1)[1].lstrip()
    section = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _train_logged(recipe, opts) -> dict:
    """effnet.train with its report in RUN.log beside the run directory (the bench prints its own)."""
    import contextlib

    from effnet.train import train

    log = Path(opts.output).with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        return train(recipe, opts)


def train_runs(runs: list, workers: int, on_done=None) -> list[dict]:
    """The trainer's summary of each (recipe, RunOptions) pair, in order; `on_done(i, summary)` as
    each ends. With workers > 1 they run in that many processes, started in list order, so an
    interleaved list (for seed: for arm:) stays interleaved in time and every arm meets the same load."""
    done = on_done or (lambda i, s: None)
    if workers <= 1:
        out = []
        for i, (r, o) in enumerate(runs):
            out.append(_train_logged(r, o))
            done(i, out[-1])
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_train_logged, r, o): i for i, (r, o) in enumerate(runs)}
        out = {}
        for f in as_completed(futures):
            out[futures[f]] = f.result()
            done(futures[f], out[futures[f]])
    return [out[i] for i in range(len(runs))]
