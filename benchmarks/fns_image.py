"""The image workload: the demo's Pillow stages (``examples.images``) and their source.

The stages are the demo's plain functions with their settings bound by ``functools.partial``:
module-level callables that stdlib pickle (``multiprocessing.Pool``, pypeln, mpipe, mpire, spdl's
process pools) and cloudpickle both carry. The source images are drawn and PNG-encoded once and
kept in a file under ``benchmarks/results/cache/``; every measurement loads them before its clock.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
from PIL import Image, ImageDraw

from examples.images import Encoded, Picture, augment_pixels, decode, encode, resize

if TYPE_CHECKING:
    from collections.abc import Callable

SIZE: Final = 320  # side of the square output images
FORMAT: Final = "webp"
QUALITY: Final = 85  # the demo's default
SIDES: Final = (640, 1024)  # the source images' sides, each drawn in this range
SEED: Final = 2026
# Bump when the drawing changes: the cache file's name carries it.
DRAWING_VERSION: Final = 1
CACHE: Final = Path(__file__).resolve().parent / "results" / "cache"

# The job's stages, in order: decode -> resize -> augment -> encode.
decode_image: Final[Callable[[Encoded], Picture]] = partial(decode, size=SIZE)
resize_image: Final[Callable[[Picture], Picture]] = partial(resize, size=SIZE)
augment_image: Final[Callable[[Picture], Picture]] = augment_pixels
encode_image: Final[Callable[[Picture], Encoded]] = partial(encode, fmt=FORMAT, quality=QUALITY)


def name_of(k: int) -> str:
    """Source image k's name; output k must be named ``name_of(k) + ".webp"``."""
    return f"img_{k:05d}"


def draw(k: int, width: int, height: int) -> bytes:
    """Image k as a PNG: a soft colour field and a dozen shapes, drawn from its own seed."""
    rng = np.random.default_rng(SEED + k)
    field = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    img = Image.fromarray(field, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    pen = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(6, 14))):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(min(width, height) // 16, min(width, height) // 4))
        red, green, blue = (int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            pen.ellipse((x - r, y - r, x + r, y + r), fill=(red, green, blue))
        else:
            pen.rectangle((x - r, y - r, x + r, y + r), fill=(red, green, blue), outline=(0, 0, 0))
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def _make(n: int) -> list[tuple[str, int, bytes]]:
    sides = np.random.default_rng(SEED).integers(SIDES[0], SIDES[1] + 1, (n, 2)).tolist()
    return [(name_of(k), SEED + k, draw(k, w, h)) for k, (w, h) in enumerate(sides)]


def source_images(n: int) -> list[Encoded]:
    """The ``n`` source images as the demo's ``Encoded`` items, the same on every run.

    Drawn and encoded once (about 0.1 s an image), then read from the cache file.
    """
    path = CACHE / f"images-v{DRAWING_VERSION}-seed{SEED}-{SIDES[0]}-{SIDES[1]}-n{n}.pickle"
    try:
        with path.open("rb") as f:
            rows: list[tuple[str, int, bytes]] = pickle.load(f)
    except FileNotFoundError:
        rows = _make(n)
        CACHE.mkdir(parents=True, exist_ok=True)
        # Written whole, then renamed: an interrupted run leaves no half file behind.
        fd, partial_path = tempfile.mkstemp(dir=CACHE, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(rows, f)
        os.replace(partial_path, path)
    return [Encoded(name, seed, data) for name, seed, data in rows]


def is_webp(data: bytes) -> bool:
    """Whether ``data`` is a non-empty WebP file (its RIFF header)."""
    return len(data) > 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP"
