"""`effnet predict` over files and folders of any size, in constant memory.

Images are found one at a time (a folder is walked recursively, in sorted order), read and
preprocessed a batch at a time by a generator, and each batch's top-k answers are handed on as they
come: whatever the count, memory holds one batch of decoded images, never a list of all of them.
The CSV is written row by row into its temporary file and renamed when the last row is in
(fileio.atomic_write), so a reader sees the previous file or the whole new one.

An image named on the command line that cannot be read is an error (as it always was); one found
in a folder is skipped and counted, so one bad file does not end a run over a million."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn

from .. import inference
from ..arch.preprocess import Preprocess
from ..data.folders import walk_images
from ..data.images import IMG_EXTENSIONS
from ..errors import UserError
from ..fileio import atomic_write

# (path, [(class index, probability), ...] best first)
Answer = tuple[Path, list[tuple[int, float]]]


def count_images(paths: Iterable[Path]) -> int:
    """How many images `paths` name (files, and the images below folders); UserError for a path
    that is neither, or a folder without images. Walks the folders once, holding no list."""
    n = 0
    for p in paths:
        if p.is_dir():
            k = sum(1 for _ in walk_images(p))
            if not k:
                raise UserError(f"no images in {p} (looked for {', '.join(IMG_EXTENSIONS)} in it and "
                                "its sub-folders)")
            n += k
        elif p.is_file():
            n += 1
        else:
            raise UserError(f"no such image: {p}")
    return n


def _image_files(paths: Iterable[Path]) -> Iterator[tuple[Path, bool]]:
    """(file, named on the command line) for each image, folders walked lazily."""
    for p in paths:
        if p.is_dir():
            yield from ((Path(f), False) for f in walk_images(p))
        else:
            yield p, True


def image_batches(paths: Iterable[Path], pre: Preprocess, batch_size: int,
                  skipped: list[tuple[Path, str]]) -> Iterator[tuple[list[Path], torch.Tensor]]:
    """(files, their (B, 3, S, S) input) a batch at a time; images of folders that cannot be read
    are appended to `skipped` as (file, why) instead."""
    files: list[Path] = []
    tensors: list[torch.Tensor] = []
    for path, named in _image_files(paths):
        try:
            tensors.append(inference.preprocess_image(path, pre))
        except UserError as e:
            if named:
                raise
            skipped.append((path, str(e)))
            continue
        files.append(path)
        if len(files) == batch_size:
            yield files, torch.stack(tensors)
            files, tensors = [], []
    if files:
        yield files, torch.stack(tensors)


def predictions(model: nn.Module, batches: Iterable[tuple[list[Path], torch.Tensor]],
                k: int) -> Iterator[Answer]:
    """Each image's top-k (class index, probability), batch by batch as `batches` yields them."""
    for files, x in batches:
        with torch.inference_mode():
            p, idx = model(x).float().softmax(-1).topk(k, dim=-1)
        for path, pi, ii in zip(files, p.tolist(), idx.tolist(), strict=True):
            yield path, list(zip(ii, pi, strict=True))


def answers(model: nn.Module, paths: Iterable[Path], pre: Preprocess, batch_size: int, k: int,
            skipped: list[tuple[Path, str]]) -> Iterator[Answer]:
    """`predictions` of the images `paths` name; UserError when not one of them could be read."""
    n = 0
    for a in predictions(model, image_batches(paths, pre, batch_size, skipped), k):
        n += 1
        yield a
    if not n and skipped:
        path, why = skipped[0]
        raise UserError(f"none of the {len(skipped)} images could be read (first: {why})")


def csv_header(k: int) -> list[str]:
    return ["path"] + [f"{what}_{r}" for r in range(1, k + 1) for what in ("label", "prob")]


def write_csv(out: Path, answers: Iterable[Answer], labels: list[str] | None, k: int,
              total: int, progress: bool = True) -> int:
    """Write `answers` as rows of path, label_1, prob_1, ..., label_k, prob_k while they come,
    with a progress bar of `total` images; the number of rows. Atomic: nothing is left at `out`
    but the previous file if this fails."""
    from tqdm import tqdm

    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        stream = iter(answers)
        first = next(stream, None)  # the first batch is read before the bar shows: a bad input is one line
        with open(tmp, "w", newline="") as f, tqdm(total=total, desc="predict", unit="img",
                                                  disable=not progress, leave=False) as bar:
            w = csv.writer(f)
            w.writerow(csv_header(k))
            for path, top in itertools.chain([first] if first else [], stream):
                cells = [str(path)]
                for i, p in top:
                    cells += [labels[i] if labels else str(i), f"{p:.6f}"]
                w.writerow(cells)
                rows += 1
                bar.update(1)

    atomic_write(out, write)
    return rows
