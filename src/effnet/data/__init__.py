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
* `effnet eval` of one ImageFolder tree without --val-split scores all of it
  (`whole_folder`, `load_class_folder`: labelled by the model's class names);
* cifar10/cifar100/flowers102/cars/imagenette:ROOT: the dataset's official test split (Flowers:
  train+val for training, as the papers).
Unreadable images are found when the folder is loaded and skipped with one warning (or, strict,
raise UserError naming the first), so a DataLoader worker never meets one it did not expect.
Images claiming more than images.MAX_PIXELS are refused; a large JPEG is decoded only as large
as its transform needs (`Transformed` passes the transform's `decode_size`; images.py says how).

The data config (which preprocessing a model gets) is resolved in one place, `config.py`
(`resolve_data_config`). Names load on first use (PEP 562): the model factory reads the data config
without importing torchvision's transforms.
"""

from __future__ import annotations

from ..lazy import lazy_names

_LAZY = {
    "ArrayImages": "datasets", "DataSplits": "datasets", "Split": "datasets",
    "Transformed": "datasets", "load_data": "datasets", "load_digits_splits": "datasets",
    "stratified_split": "datasets", "load_class_folder": "datasets", "whole_folder": "datasets",
    "ImageFiles": "folders", "scan_folder": "folders", "walk_images": "folders",
    "IMG_EXTENSIONS": "images", "check_image": "images", "load_rgb": "images", "to_rgb": "images",
    "BatchMixer": "mixing", "batch_mixer": "mixing",
    "Cutout": "transforms", "RandAugmentM": "transforms", "eval_transform": "transforms",
    "train_transform": "transforms",
    "DataOverrides": "config", "resolve_data_config": "config",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
