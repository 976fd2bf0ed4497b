"""Files whose headers lie, shared by the tests that feed them to effnet."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height RGB pixels, with almost no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
