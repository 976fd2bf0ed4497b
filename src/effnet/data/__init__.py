"""Training data: where images come from, how each stage transforms them, how batches are mixed.

`load_data(--data)` returns `DataSplits(train, val, classes, name)`, both splits yielding
(RGB PIL image, int label) with no transform; wrap each in `Transformed(split, transform)` with
`train_transform(...)` / `eval_transform(...)`, and reassign `.transform` between progressive
learning stages.

How val is chosen:
* built-in digits (`--data digits`, the default): scikit-learn's 1,797 8x8 digits, a fixed split
  stratified with seed 0 whatever the run's seed: 1,437 train / 360 val (20 %);
* a folder with train/ and val/ (or valid/, validation/, test/): those two trees, val numbered by
  train's classes;
* one ImageFolder tree (or train/ alone) with --val-split F: ceil(F * N) images held out,
  stratified by class, drawn with the given seed (same seed, same split);
* cifar10/cifar100/flowers102/cars/imagenette:ROOT: the dataset's official test split (Flowers:
  train+val for training, as the papers).
Unreadable images are found when the folder is loaded and skipped with one warning (or, strict,
raise UserError naming the first), so a DataLoader worker never meets one it did not expect.
Images claiming more than images.MAX_PIXELS are refused; a large JPEG is decoded only as large
as its transform needs (`Transformed` passes the transform's `decode_size`; images.py says how).
"""

from .datasets import (
    ArrayImages,
    DataSplits,
    Split,
    Transformed,
    load_data,
    load_digits_splits,
    stratified_split,
)
from .folders import ImageFiles, scan_folder
from .images import IMG_EXTENSIONS, check_image, load_rgb, to_rgb
from .mixing import BatchMixer, batch_mixer
from .transforms import Cutout, RandAugmentM, eval_transform, train_transform

__all__ = [
    "IMG_EXTENSIONS", "ArrayImages", "BatchMixer", "Cutout", "DataSplits", "ImageFiles",
    "RandAugmentM", "Split", "Transformed", "batch_mixer", "check_image", "eval_transform",
    "load_data", "load_digits_splits", "load_rgb", "scan_folder", "stratified_split",
    "to_rgb", "train_transform",
]
