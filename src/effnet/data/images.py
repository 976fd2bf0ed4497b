"""Reading image files as RGB, and a cheap check that a file is an image at all."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# torchvision's IMG_EXTENSIONS plus .gif; matched case-insensitively.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")

# The most pixels an image may claim in its header, PIL's default Image.MAX_IMAGE_PIXELS (~89 Mpx)
# held here so that a library that changes PIL's global changes nothing. An image over it is
# refused before any pixel is decoded (PIL only warns up to twice its limit and refuses above).
# Under it, a JPEG is decoded at the size its transform needs (`decoding_for`); other formats
# have no cheaper decode and are read in full, up to ~270 MB of RGB per image per read.
MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3

# What PIL raises on a broken, truncated or foreign file; DecompressionBombError derives from
# Exception alone, so it is named.
READ_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
               Image.DecompressionBombError)

# A JPEG is decoded at 1/2, 1/4 or 1/8 scale only while the short side keeps DRAFT_GAP x the size
# the transform needs, so the resize after it still averages >= 2 decoded pixels per output pixel,
# as PIL's own thumbnail() does (its reducing_gap). Measured on a 2400x1800 photo with an eval
# transform: 1/255 on average and 13/255 at worst from a full decode with no gap, 0.3/255 and
# 4/255 with it (tests/test_data_decode.py holds the bound).
DRAFT_GAP = 2
DCT_SCALES = (8, 4, 2)

# the short side (px) the transform of the image being read needs; None: decode in full
_DECODE_SIZE: contextvars.ContextVar[int | None] = contextvars.ContextVar("effnet_decode_size",
                                                                         default=None)


@contextlib.contextmanager
def decoding_for(size: int | None) -> Iterator[None]:
    """Within it, `load_rgb` decodes a JPEG at a reduced scale that keeps its short side
    >= DRAFT_GAP x `size` px (`_draft`), instead of in full. Datasets wrap their reads in it (see
    Transformed), so the hint reaches the loader through any dataset class in between."""
    token = _DECODE_SIZE.set(size)
    try:
        yield
    finally:
        _DECODE_SIZE.reset(token)


@contextlib.contextmanager
def _open(path: str | os.PathLike) -> Iterator[Image.Image]:
    """The image with its header read and no pixel decoded; one over MAX_PIXELS is refused.

    PIL's own DecompressionBombWarning (over its limit, under twice it) is left to the warnings
    machinery rather than silenced here: catch_warnings is not thread-safe (check_images runs
    in threads), and the refusal below follows it anyway."""
    with Image.open(path) as im:
        width, height = im.size
        if width * height > MAX_PIXELS:
            raise Image.DecompressionBombError(
                f"image size ({width * height} pixels) exceeds the limit of {MAX_PIXELS} pixels "
                "(effnet.data.images.MAX_PIXELS)")
        yield im


def _draft(im: Image.Image, size: int) -> None:
    """Have PIL's JPEG decoder (draft mode; other formats ignore it) decode at the smallest scale
    1/s that divides both sides and leaves the short side >= DRAFT_GAP * size. A scale that does
    not divide a side leaves a last decoded pixel that covers part of the image, which stretches
    it by up to a pixel (measured: up to 73/255 off a full decode along the edges in a 2401x1801 photo)."""
    width, height = im.size
    for s in DCT_SCALES:
        if width % s == 0 and height % s == 0 and min(width, height) // s >= DRAFT_GAP * size:
            im.draft("RGB", (width // s, height // s))  # PIL picks exactly 1/s for these sides
            return


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


def load_rgb(path: str | os.PathLike, size: int | None = None) -> Image.Image:
    """Decode a file into an RGB image, upright as its EXIF orientation says.

    A JPEG is decoded at a reduced DCT scale (PIL's draft mode, see `_draft`) when its short side
    is well above `size` px (default: the `decoding_for` around the call; None decodes in full);
    the transform then resizes as it would the full image. Other formats are decoded in full.
    Raises one of READ_ERRORS for an unreadable file (callers decide whether that is fatal)."""
    size = _DECODE_SIZE.get() if size is None else size
    with _open(path) as im:
        if size:
            _draft(im, size)
        im.load()
        im = ImageOps.exif_transpose(im)
        return to_rgb(im)


def check_image(path: str | os.PathLike) -> str | None:
    """None when the file looks like a readable image, else the reason it is not.

    Cheap: reads the header (and for PNG the chunk checksums) without decoding pixels, so a
    million files take about a minute. A file that passes but whose pixel data is truncated is
    caught later by the dataset, which substitutes a neighbour and warns (see folders.py)."""
    try:
        with _open(path) as im:
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
