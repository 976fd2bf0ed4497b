"""Reading image files as RGB, and a cheap check that a file is an image at all."""

from __future__ import annotations

import contextlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# torchvision's IMG_EXTENSIONS plus .gif; matched case-insensitively.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")

# What PIL raises on a broken, truncated or foreign file; DecompressionBombError derives from
# Exception alone, so it is named. PIL only warns (DecompressionBombWarning) between
# Image.MAX_IMAGE_PIXELS (~89 Mpx) and twice that; here that warning is an error too (see _no_bombs).
READ_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
               Image.DecompressionBombError, Image.DecompressionBombWarning)


@contextlib.contextmanager
def _no_bombs():
    """An image whose header claims more than Image.MAX_IMAGE_PIXELS is refused before its pixels
    are decoded, instead of a warning followed by gigabytes of decoding."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB.

    PIL's own convert("RGB") clips 16-bit and 32-bit grey at 255 (a 16-bit PNG comes out almost
    white) and drops alpha, leaving whatever colour transparent pixels happen to hold; here high
    bit depths are rescaled and transparency is composited over white, as a viewer shows it.
    """
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I") or mode == "F":
        a = np.asarray(im)
        if a.ndim == 3:  # some Pillow builds hand back (H, W, 1)
            a = a[..., 0]
        a = a.astype(np.float64)
        if mode.startswith("I;16"):
            a = a / 257.0
        elif mode == "F" and a.size and float(np.nanmax(a)) <= 1.0:
            a = a * 255.0  # a float image in [0, 1]
        elif mode == "I" and a.size and float(a.max()) > 255:
            a = a / 257.0  # a 16-bit image Pillow widened to 32-bit ints
        grey = np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode a file fully into an RGB image, upright as its EXIF orientation says.

    Raises one of READ_ERRORS for an unreadable file (callers decide whether that is fatal)."""
    with _no_bombs(), Image.open(path) as im:
        im.load()
        im = ImageOps.exif_transpose(im)
        return to_rgb(im)


def check_image(path: str | os.PathLike) -> str | None:
    """None when the file looks like a readable image, else the reason it is not.

    Cheap: reads the header (and for PNG the chunk checksums) without decoding pixels, so a
    million files take about a minute. A file that passes but whose pixel data is truncated is
    caught later by the dataset, which substitutes a neighbour and warns (see folders.py)."""
    try:
        with _no_bombs(), Image.open(path) as im:
            im.verify()
    except READ_ERRORS as e:
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return None


def check_images(paths: list[Path], progress: bool | None = None) -> list[str | None]:
    """check_image over many files; threads hide file-system latency (the work is mostly I/O)."""
    if len(paths) < 256:
        return [check_image(p) for p in paths]
    from tqdm import tqdm

    show = len(paths) >= 20_000 if progress is None else progress
    with ThreadPoolExecutor(max_workers=min(16, 4 * (os.cpu_count() or 1))) as pool:
        results = pool.map(check_image, paths, chunksize=64)
        return list(tqdm(results, total=len(paths), desc="checking images", unit="img",
                         disable=not show, leave=False))
