"""The transfer-learning benchmarks of SPEC D.3 (and Imagenette) through torchvision's dataset
classes, read from a local root; nothing is fetched unless the user passes --download."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from ..errors import UserError
from .images import load_rgb

PUBLIC = ("cifar10", "cifar100", "flowers102", "cars", "imagenette")


def _cifar(cls, root: Path, download: bool):
    # torchvision's CIFAR loader unpickles its batch files by design. It first checks each file's
    # md5 against the official release, so only those exact bytes are ever unpickled; the house
    # rule "never unpickle untrusted files" is about effnet's own checkpoints and is kept.
    return cls(root, train=True, download=download), cls(root, train=False, download=download)


def _build(name: str, root: Path, download: bool) -> tuple[Dataset, Dataset, list[str]]:
    from torchvision import datasets as tvd

    if name in ("cifar10", "cifar100"):
        train, val = _cifar(tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100, root, download)
        return train, val, list(train.classes)
    if name == "flowers102":
        # P2 Table 9 trains on train+validation (2,040) and reports on test (6,149).
        parts = [tvd.Flowers102(root, split=s, download=download, loader=load_rgb)
                 for s in ("train", "val", "test")]
        return ConcatDataset(parts[:2]), parts[2], list(parts[0].classes)
    if name == "cars":
        if download:
            raise UserError("Stanford Cars can no longer be downloaded from its original site; "
                            f"place it under {root / 'stanford_cars'} and drop --download")
        train = tvd.StanfordCars(root, split="train", loader=load_rgb)
        return train, tvd.StanfordCars(root, split="test", loader=load_rgb), list(train.classes)
    if name == "imagenette":
        train = tvd.Imagenette(root, split="train", download=download, loader=load_rgb)
        val = tvd.Imagenette(root, split="val", download=False, loader=load_rgb)
        # torchvision names each class by a tuple of synonyms; the first is the common name.
        return train, val, [c[0] if isinstance(c, tuple) else str(c) for c in train.classes]
    raise AssertionError(name)


def load_public(name: str, root: str, download: bool = False):
    """(train, val, classes) of a public dataset; val is the official test split."""
    if not root:
        raise UserError(f"{name} needs a root folder: --data {name}:ROOT")
    path = Path(root).expanduser()
    try:
        return _build(name, path, download)
    except UserError:
        raise
    except RuntimeError as e:
        if download:
            raise UserError(f"could not fetch {name} into {path}: {e}") from None
        raise UserError(f"{name} not found (or incomplete) under {path}; "
                        "pass --download to fetch it") from None
    except (OSError, ValueError) as e:  # network errors are OSErrors; a bad archive, ValueError
        what = "fetch" if download else "read"
        raise UserError(f"could not {what} {name} under {path}: {e}") from None
