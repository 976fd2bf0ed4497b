"""Walking a class-folder tree whose symlinks loop: each real image is listed once, in bounded time."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from effnet.data import load_data, scan_folder
from effnet.errors import UserError

# the walk of a tree of 8 images with the links below: bounded by the real tree, not the links
WALK_LIMIT_S = 5.0


def tree(root: Path) -> set[str]:
    """root/<class>/[sub/]*.png, 4 images per class; the real paths of the images."""
    made = set()
    for c in ("a", "b"):
        for i, sub in enumerate(("", "", "sub", "sub")):
            (root / c / sub).mkdir(parents=True, exist_ok=True)
            path = root / c / sub / f"{i}.png"
            Image.new("RGB", (8, 8), (i * 50, 0, 0)).save(path)
            made.add(os.path.realpath(path))
    return made


def listed(root: Path) -> tuple[Counter, float]:
    """How often scan_folder lists each real image, and how long it took."""
    start = time.monotonic()
    files = scan_folder(root)
    took = time.monotonic() - start
    return Counter(os.path.realpath(p) for p, _ in files.samples), took


def test_a_link_to_an_ancestor_lists_each_image_once(tmp_path):
    real = tree(tmp_path)
    os.symlink(tmp_path / "a", tmp_path / "a" / "sub" / "loop")  # a/sub/loop/sub/loop/...
    counts, took = listed(tmp_path)
    assert set(counts) == real and set(counts.values()) == {1}, counts.most_common(2)
    assert took < WALK_LIMIT_S


def test_two_nested_loops_stay_linear(tmp_path):
    # every level offers two ways back up: without tracking real folders the walk doubles at each
    # of ~40 levels; with it, each folder is read once
    real = tree(tmp_path)
    os.symlink(tmp_path / "a", tmp_path / "a" / "sub" / "up")
    os.symlink(tmp_path / "a" / "sub", tmp_path / "a" / "sub" / "here")
    os.symlink(tmp_path / "b", tmp_path / "b" / "sub" / "up")
    os.symlink(tmp_path / "b" / "sub", tmp_path / "b" / "sub" / "here")
    counts, took = listed(tmp_path)
    assert set(counts) == real and set(counts.values()) == {1}, counts.most_common(2)
    assert took < WALK_LIMIT_S


def test_a_loop_cannot_put_one_image_in_train_and_val(tmp_path):
    tree(tmp_path / "d")
    os.symlink(tmp_path / "d" / "a", tmp_path / "d" / "a" / "sub" / "loop")
    splits = load_data(tmp_path / "d", val_split=0.5, seed=0)
    sides = [{os.path.realpath(splits.train.base.samples[i][0]) for i in s.indices}
             for s in (splits.train, splits.val)]
    assert not sides[0] & sides[1] and len(sides[0]) + len(sides[1]) == 8


def test_a_linked_folder_elsewhere_is_still_followed(tmp_path):
    # links are not refused: a class folder may gather images kept outside the tree, once
    tree(tmp_path / "d")
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    (tmp_path / "more").mkdir()
    os.rename(tmp_path / "outside.png", tmp_path / "more" / "x.png")
    os.symlink(tmp_path / "more", tmp_path / "d" / "b" / "more")
    counts, _ = listed(tmp_path / "d")
    assert counts[os.path.realpath(tmp_path / "more" / "x.png")] == 1 and len(counts) == 9


def test_a_class_that_is_a_link_to_another_class_is_refused(tmp_path):
    tree(tmp_path)
    os.symlink(tmp_path / "a", tmp_path / "c")
    with pytest.raises(UserError, match=r"class folder .*/c is another class's folder"):
        scan_folder(tmp_path)
