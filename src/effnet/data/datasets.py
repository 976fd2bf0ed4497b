"""Where training data comes from: `load_data` turns the user's --data string into train/val splits
of (RGB PIL image, int label) with no transform applied."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..errors import UserError
from .folders import ImageFiles, list_classes, scan_folder
from .images import decoding_for
from .public import PUBLIC, load_public

VAL_DIRS = ("val", "valid", "validation", "test")
DIGITS_VAL_SPLIT = 0.2


@dataclass
class DataSplits:
    train: Dataset  # items: (PIL.Image RGB, int label); no transform applied
    val: Dataset
    classes: list[str]
    name: str  # "digits", "imagefolder:/abs/path", "cifar10", ...

    def require_two_classes(self) -> None:
        """Refuse data of one class: a one-class classifier is right whatever it sees, so training
        or evaluating it reports a meaningless 100 %. Only a folder can have one class."""
        _require_two_classes(self.name.removeprefix("imagefolder:"), self.classes)


def _require_two_classes(where: str, classes: list[str]) -> None:
    if len(classes) < 2:
        raise UserError(f"{where} has a single class, {classes[0]!r}: a classifier needs "
                        "at least 2 classes (with one it scores 100 % whatever it learns)")


class ArrayImages(Dataset):
    """Images held in memory as one uint8 (N, H, W, 3) array; an array pickles to DataLoader
    workers far faster than a list of PIL images."""

    def __init__(self, pixels: np.ndarray, labels: Sequence[int], classes: list[str]):
        self.pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        self.targets = [int(t) for t in labels]
        self.classes = classes

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return Image.fromarray(self.pixels[index], "RGB"), self.targets[index]


class Split(Dataset):
    """A subset that keeps `targets` and `classes` visible (torch's Subset hides them)."""

    def __init__(self, base: Dataset, indices: Sequence[int]):
        self.base = base
        self.indices = [int(i) for i in indices]
        base_targets = getattr(base, "targets", None)
        self.targets = None if base_targets is None else [base_targets[i] for i in self.indices]
        self.classes = getattr(base, "classes", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.base[self.indices[index]]


class Transformed(Dataset):
    """A split with a transform on its images. `.transform` may be reassigned between progressive
    learning stages; DataLoader workers hold a copy, so make a new DataLoader after reassigning
    (or keep persistent_workers=False, the default, which re-copies the dataset every epoch)."""

    def __init__(self, base: Dataset, transform: Callable | None):
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        # a JPEG is decoded only as large as the transform needs (Pipeline.decode_size)
        with decoding_for(getattr(self.transform, "decode_size", None)):
            image, label = self.base[index]
        return (image if self.transform is None else self.transform(image)), label


def stratified_split(labels: Sequence[int], val_fraction: float,
                     seed: int = 0) -> tuple[list[int], list[int]]:
    """(train indices, val indices), each sorted. Val gets ceil(fraction * N) items (the convention
    of scikit-learn's train_test_split), shared among classes in proportion to their size by
    largest remainder; a class never gives its last image to val. Depends only on the labels,
    the fraction and the seed."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"--val-split must be between 0 and 1 (exclusive), got {val_fraction}")
    labels = np.asarray(labels, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * val_fraction
    take = np.minimum(np.floor(quota).astype(np.int64), counts - 1)
    short = math.ceil(val_fraction * len(labels) - 1e-9) - int(take.sum())
    # Largest fractional part first, then lower class id: deterministic with no RNG involved.
    for c in sorted(range(len(classes)), key=lambda c: (-(quota[c] - np.floor(quota[c])), c)):
        if short <= 0:
            break
        if take[c] < counts[c] - 1:
            take[c] += 1
            short -= 1
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for c, k in zip(classes, take, strict=True):
        members = np.flatnonzero(labels == c)
        val.extend(rng.permutation(members)[:k].tolist())
    if not val or len(val) == len(labels):
        raise UserError(f"--val-split {val_fraction} of {len(labels)} images leaves one side empty")
    chosen = set(val)
    return [i for i in range(len(labels)) if i not in chosen], sorted(val)


def load_digits_splits(val_split: float | None = None) -> DataSplits:
    """scikit-learn's 1,797 real 8x8 handwritten digits (0..16 grey levels) as RGB uint8 images
    (level * 255 / 16). The split is fixed, stratified with seed 0 whatever the run's seed, so runs
    compare on the same images: 20 % val = 1,437 train / 360 val (35 to 37 of each digit)."""
    images, target = digits_arrays()
    grey = np.round(images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    pixels = np.repeat(grey[..., None], 3, axis=-1)
    classes = [str(n) for n in range(10)]
    full = ArrayImages(pixels, target, classes)
    train, val = stratified_split(target, DIGITS_VAL_SPLIT if val_split is None else val_split, 0)
    return DataSplits(Split(full, train), Split(full, val), classes, "digits")


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as `load_digits()` gives them ((1797, 8, 8) levels, targets), read from
    the CSV inside the installed package: importing scikit-learn costs ~1.5 s, more than a small
    training run. `load_digits` itself where the file is not where it has always been."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    roots = spec.submodule_search_locations if spec is not None else None
    csv = Path(roots[0]) / "datasets" / "data" / "digits.csv.gz" if roots else None
    if csv is not None and csv.is_file():
        data = np.loadtxt(csv, delimiter=",")
        return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target


def _load_folder(root: Path, val_split: float | None, strict: bool, seed: int) -> DataSplits:
    if not root.exists():
        raise UserError(f"data directory not found: {root}")
    if not root.is_dir():
        raise UserError(f"--data must be a directory, a dataset name or name:ROOT, got file {root}")
    name = f"imagefolder:{root.resolve()}"
    train_dir = root / "train"
    val_dir = next((root / d for d in VAL_DIRS if (root / d).is_dir()), None)
    if train_dir.is_dir() and val_dir is not None:
        if val_split is not None:
            raise UserError(f"{root} already has {val_dir.name}/ for validation; drop --val-split")
        train = scan_folder(train_dir, strict=strict)
        val = scan_folder(val_dir, classes=train.classes, strict=strict)
        return DataSplits(train, val, train.classes, name)
    if val_dir is not None:
        raise UserError(f"{root} has {val_dir.name}/ but no train/ folder")
    source = train_dir if train_dir.is_dir() else root
    if val_split is None:
        raise UserError(f"{root} has no train/ and val/ folders; pass --val-split FRACTION "
                        "to hold out part of it for validation")  # its range: load_data
    full = scan_folder(source, strict=strict)
    train_idx, val_idx = stratified_split(full.targets, val_split, seed)
    return DataSplits(Split(full, train_idx), Split(full, val_idx), full.classes, name)


def _folder_of(data: str) -> Path:
    """The directory a --data string that names no dataset points at."""
    prefix, sep, rest = data.partition(":")
    return Path(rest if sep and prefix.lower() == "imagefolder" else data).expanduser()


def whole_folder(data: str | os.PathLike | None, val_split: float | None) -> Path | None:
    """The folder `effnet eval --data` scores whole: a directory of class folders with no train/
    or val/ (valid/, validation/, test/) inside, given without --val-split. None for anything
    `load_data` splits (the digits, a public dataset, a split folder, a --val-split)."""
    if data is None or val_split is not None:
        return None
    data = os.fspath(data)
    prefix, sep, _ = data.partition(":")
    if data == "digits" or data.lower() in PUBLIC or (sep and prefix.lower() in PUBLIC):
        return None
    root = _folder_of(data)
    if not root.is_dir() or any((root / d).is_dir() for d in ("train", *VAL_DIRS)):
        return None
    return root


def load_class_folder(root: Path, classes: list[str] | None, owner: str,
                      strict: bool = False) -> ImageFiles:
    """Every image of the class folders under `root`, labelled by `classes` (a model's class names
    in its order; the folders may hold a subset of them, in any order) or, where the model names
    none, by the folders' sorted order. UserError for a class folder that `owner` (the weights)
    does not know, and, without names, for a single class folder."""
    own = list_classes(root)
    if classes is None:
        _require_two_classes(str(root), own)
    else:
        unknown = [c for c in own if c not in set(classes)]
        if unknown:
            raise UserError(f"{root} has class folder(s) that {owner} does not know: {_few(unknown)} "
                            f"(its classes: {_few(classes)})")
    return scan_folder(root, classes=classes, strict=strict)


def _few(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" ... ({len(names)} in all)" if len(names) > n else "")


def load_data(data: str | os.PathLike | None, *, val_split: float | None = None, download: bool = False,
              strict: bool = False, seed: int = 0) -> DataSplits:
    """Train and val splits for --data.

    * None or "digits": the built-in digits (see load_digits_splits).
    * DIR with train/ and val/ (or valid/, validation/, test/): ImageFolder trees; val uses
      train's class numbering.
    * DIR (or DIR/train/ alone) with val_split: one ImageFolder tree split stratified by `seed`.
    * "cifar10:ROOT", "cifar100:ROOT", "flowers102:ROOT", "cars:ROOT", "imagenette:ROOT": the
      torchvision dataset under ROOT (val = its test split); fetched only with download=True.
    * "imagefolder:DIR" is DIR.

    Unreadable images are skipped with one warning (strict=True: UserError naming the first).
    """
    if val_split is not None and not 0.0 < val_split < 1.0:
        raise UserError(f"--val-split must be between 0 and 1 (exclusive), got {val_split}")
    if data is not None:
        data = os.fspath(data)
    if data is None or data == "digits":
        return load_digits_splits(val_split)
    prefix, sep, rest = data.partition(":")
    if sep and prefix.lower() in PUBLIC:
        if val_split is not None:
            raise UserError(f"{prefix} has an official test split; drop --val-split")
        train, val, classes = load_public(prefix.lower(), rest, download)
        return DataSplits(train, val, classes, prefix.lower())
    if data.lower() in PUBLIC:
        raise UserError(f"say where {data} is (or should go): --data {data}:ROOT")
    return _load_folder(_folder_of(data), val_split, strict, seed)
