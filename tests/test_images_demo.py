"""The image demo (``make demo``): both runs write the same images, and it reports where time went."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _demo(*args: str) -> str:
    """Run ``python -m examples.images ARGS`` as ``make demo`` does; return what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "examples.images", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Warning" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def _sizes(folder: Path) -> dict[str, tuple[int, int]]:
    """Each file in ``folder`` by name, opened as an image: its size."""
    sizes: dict[str, tuple[int, int]] = {}
    for path in folder.iterdir():
        with Image.open(path) as img:
            img.load()
            sizes[path.name] = img.size
    return sizes


@pytest.mark.timeout(60)
def test_images_demo_both_modes_write_the_same_images(tmp_path: Path) -> None:
    """Sequential and pipelined runs write the same 12 images at the requested size, and the
    printout gives both times, the speed-up, the run report with its bottleneck line and a plot."""
    out = _demo(
        "--count", "12", "--size", "48", "--source-size", "64", "96", "--output", str(tmp_path)
    )

    sequential, pipelined = _sizes(tmp_path / "sequential"), _sizes(tmp_path / "pipelined")
    assert sorted(pipelined) == [f"img_{i:05d}.webp" for i in range(12)]
    assert sequential == pipelined
    assert set(pipelined.values()) == {(48, 48)}

    assert re.search(r"sequential: +\d+\.\d+ s", out), out
    assert re.search(r"pipelined: +\d+\.\d+ s", out), out
    assert re.search(r"speed-up: \d+\.\d+x", out), out
    assert "same files: 12 in each folder, 12 of them byte-identical" in out
    assert re.search(r"^run report: .* backend 'process'", out, re.MULTILINE), out
    assert re.search(r"^bottleneck: \w", out, re.MULTILINE), out
    assert (tmp_path / "report.png").read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.timeout(60)
def test_images_demo_reads_an_input_folder(tmp_path: Path) -> None:
    """With --input, every image file of the folder (any mode, any format) becomes one output
    file; other files are ignored, and --plot puts the plot where it says."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, shape, mode in [("a.jpg", (90, 120, 3), "RGB"), ("b.png", (70, 50, 4), "RGBA")]:
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / name)
    Image.fromarray(rng.integers(0, 256, (60, 60), dtype=np.uint8), "L").save(folder / "c.webp")
    (folder / "notes.txt").write_text("not an image")
    output, plot = tmp_path / "out", tmp_path / "lanes.png"
    out = _demo(
        *("--input", str(folder), "--output", str(output), "--size", "32", "--format", "png"),
        *("--mode", "pipelined", "--plot", str(plot)),
    )

    assert _sizes(output / "pipelined") == dict.fromkeys(["a.png", "b.png", "c.png"], (32, 32))
    assert not (output / "sequential").exists()
    assert "3 images from" in out
    assert re.search(r"pipelined: +\d+\.\d+ s", out), out
    assert "bottleneck:" in out
    assert plot.read_bytes().startswith(PNG_SIGNATURE)
