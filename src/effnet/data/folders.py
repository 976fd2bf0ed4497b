"""ImageFolder trees (`root/<class>/**/<image>`), checked at load time so that a bad file costs one
warning line here rather than a crash inside a DataLoader worker hours later."""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from torch.utils.data import Dataset

from ..errors import EffnetWarning, UserError
from .images import IMG_EXTENSIONS, READ_ERRORS, check_images, is_image_name, load_rgb


class ImageFiles(Dataset):
    """(path, label) pairs read as (RGB PIL image, int).

    A file that passed the load-time check but fails to decode (truncated pixel data, deleted
    since) is replaced by the next readable sample with a warning, so one bad file among a
    million does not end a run; with strict=True it raises UserError instead. `skipped` lists the
    (path, reason) of the files the load-time check left out (the run report shows them)."""

    def __init__(self, samples: list[tuple[str, int]], classes: list[str], strict: bool = False,
                 skipped: list[tuple[str, str]] | None = None):
        self.samples = samples
        self.targets = [label for _, label in samples]
        self.classes = classes
        self.strict = strict
        self.skipped = list(skipped or [])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        n = len(self.samples)
        for k in range(min(n, 16)):
            path, label = self.samples[(index + k) % n]
            try:
                return load_rgb(path), label
            except READ_ERRORS as e:
                if self.strict:
                    raise UserError(f"cannot read image {path}: {e}") from None
                warnings.warn(f"cannot read image {path} ({e}); using the next sample instead",
                              EffnetWarning, stacklevel=2)
        raise UserError(f"{k + 1} images in a row are unreadable, the last {path}")


def list_classes(root: Path) -> list[str]:
    """Sorted class folder names under root; UserError when root is not an ImageFolder tree."""
    if not root.exists():
        raise UserError(f"data directory not found: {root}")
    if not root.is_dir():
        raise UserError(f"not a directory: {root}")
    with os.scandir(root) as it:
        entries = list(it)
    classes = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not classes:
        loose = any(e.is_file() and is_image_name(e.name) for e in entries)
        hint = ("images but no class folders: put each class's images in its own sub-folder"
                if loose else "no class folders (expected ROOT/<class>/<image files>)")
        raise UserError(f"{root} has {hint}")
    return classes


def _first_visit(path: str | Path, seen: set[tuple[int, int]]) -> bool:
    """True the first time the real directory behind `path` (links followed) is met."""
    try:
        st = os.stat(path)
    except OSError:  # a dangling link or a folder we may not read: os.walk skips it as well
        return False
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True


def walk_images(folder: Path, seen: set[tuple[int, int]] | None = None) -> Iterator[str]:
    """Image files below `folder`, in sorted order, one at a time (a folder of any size costs no
    list). Symlinks are followed, each real directory listed once (`seen` holds the ones met so
    far, in a class tree the class folders first): a link back to an ancestor would otherwise be
    walked ~40 levels deep (until the path cannot be resolved), listing every image again at each
    level, and two such links make the walk exponential; the copies could land in both train and
    val. A link into another class folder is not followed either."""
    if seen is None:
        seen = set()
        _first_visit(folder, seen)
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in sorted(dirnames)
                       if not d.startswith(".") and _first_visit(os.path.join(dirpath, d), seen)]
        yield from (os.path.join(dirpath, f) for f in sorted(filenames) if is_image_name(f))


def _files_of(class_dir: Path, seen: set[tuple[int, int]]) -> list[str]:
    return list(walk_images(class_dir, seen))


def scan_folder(root: Path, classes: list[str] | None = None, strict: bool = False) -> ImageFiles:
    """An ImageFiles over root; `classes` (the train split's) fixes the label numbering of a val
    folder, which may lack a class but not add one."""
    root = Path(root).expanduser()
    own = list_classes(root)
    if classes is None:
        classes = own
    else:
        extra = sorted(set(own) - set(classes))
        if extra:
            raise UserError(f"{root} has class folder(s) that training data lacks: "
                            f"{', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
    index = {c: i for i, c in enumerate(classes)}
    seen: set[tuple[int, int]] = set()
    for c in own:
        if not _first_visit(root / c, seen):
            raise UserError(f"class folder {root / c} is another class's folder (a link): the "
                            "same images cannot have two labels")
    per_class = {c: _files_of(root / c, seen) for c in own}
    if not any(per_class.values()):
        raise UserError(f"no images found under {root} (looked for {', '.join(IMG_EXTENSIONS)})")
    for c, files in per_class.items():
        if not files:
            raise UserError(f"class folder {root / c} has no images")

    samples = [(f, index[c]) for c in own for f in per_class[c]]
    reasons = check_images([Path(f) for f, _ in samples])
    bad = [(f, r) for (f, _), r in zip(samples, reasons, strict=True) if r is not None]
    if bad:
        first, why = bad[0]
        if strict:
            raise UserError(f"unreadable image {first} ({why})"
                            + (f" and {len(bad) - 1} more" if len(bad) > 1 else ""))
        warnings.warn(f"skipped {len(bad)} unreadable image(s) of {len(samples)} under {root} "
                      f"(first: {first}: {why})", EffnetWarning, stacklevel=3)
        bad_set = {f for f, _ in bad}
        samples = [s for s in samples if s[0] not in bad_set]
        left = Counter(label for _, label in samples)
        for c in own:
            if not left[index[c]]:
                raise UserError(f"every image in class folder {root / c} is unreadable")
    return ImageFiles(samples, list(classes), strict=strict, skipped=bad)
