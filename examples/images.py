"""An image-dataset job, run as a plain loop and as a pipeline: the time each takes, and why.

Each image is made (synthesized, or read from ``--input``), decoded, resized, augmented (flip,
rotation, colour jitter, blur), encoded (WebP by default) and written. The same typed stages run
twice: sequentially in this process (``backend="inline"``), then as a pipeline, one process per
stage worker (``backend="process"``), the heavy stages with two workers each. Both runs must
write the same files; then the run report shows where the pipeline's time went, and its plot
(one lane per stage) is written next to the images.

Images travel between stages as encoded bytes or numpy arrays, never as PIL images: pickle
protocol 5 sends their buffers out of band, and the large ones cross through shared memory.

Run it with ``python -m examples.images`` (or ``make demo``); on a folder of your own::

    python -m examples.images --input photos/ --output dataset/ --count 1000 --size 224
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from olympipe_typed import Pipeline, Stage, partial_stage, source, stage

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

    Pixels = npt.NDArray[np.uint8]  # height x width x 3, RGB

A = TypeVar("A")
B = TypeVar("B")

# --format: Pillow's name for it, and the file extension.
FORMATS: Final = {"webp": ("WEBP", "webp"), "jpeg": ("JPEG", "jpg"), "png": ("PNG", "png")}
DEFAULT_COUNT: Final = 1200  # both runs: 45 s on 2 free cores (55-70 s when they are shared)
BUSY_ELSEWHERE: Final = 0.25  # CPUs used by other programs worth a note beside the times
IMAGE_SUFFIXES: Final = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


# -- what travels between stages ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spec:
    """A picture to synthesize: its name, the seed that draws it, its size."""

    name: str
    seed: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Encoded:
    """An encoded image file (JPEG, PNG, WebP ...) not yet decoded, or ready to be written."""

    name: str
    seed: int  # drives the augmentation: every run writes the same files
    data: bytes


@dataclass(frozen=True, slots=True)
class Picture:
    """Decoded pixels: a numpy array, which crosses processes through shared memory."""

    name: str
    seed: int
    pixels: Pixels


# -- the stages -----------------------------------------------------------------------------


@stage
def generate(spec: Spec) -> Encoded:
    """Draw a picture (soft colour field, shapes, grain) and encode it as a camera would: JPEG."""
    rng = np.random.default_rng(spec.seed)
    w, h = spec.width, spec.height
    field = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    img = Image.fromarray(field, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(6, 14))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(min(w, h) // 16, min(w, h) // 4))
        red, green, blue = (int(c) for c in rng.integers(0, 256, 3))
        colour = (red, green, blue)
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        elif kind == 1:
            draw.rectangle((x - r, y - r, x + r, y + r), fill=colour, outline=(0, 0, 0), width=3)
        else:
            sides = int(rng.integers(3, 8))
            draw.regular_polygon((x, y, r), sides, rotation=float(rng.uniform(0, 360)), fill=colour)
    grain = Image.fromarray(rng.integers(100, 157, (h, w), dtype=np.uint8), "L").convert("RGB")
    img = ImageChops.add(img, grain, scale=1.0, offset=-128)
    return Encoded(spec.name, spec.seed, _save(img, "JPEG", quality=92))


@stage
def read(path: Path) -> Encoded:
    """Read one image file as it is on disk."""
    return Encoded(path.stem, zlib.crc32(path.name.encode()), path.read_bytes())


def decode(item: Encoded, size: int) -> Picture:
    """Decode an image file to RGB pixels, upright (EXIF orientation applied); a large JPEG is
    decoded at a reduced scale still at least ``size`` on each side."""
    with Image.open(io.BytesIO(item.data)) as img:
        img.draft("RGB", (size, size))
        upright = ImageOps.exif_transpose(img).convert("RGB")
    return Picture(item.name, item.seed, np.asarray(upright))


def resize(picture: Picture, size: int) -> Picture:
    """Scale and centre-crop to ``size`` x ``size``, with Lanczos resampling, as dataset tools
    use for downscaling."""
    img = Image.fromarray(picture.pixels)
    square = ImageOps.fit(img, (size, size), Image.Resampling.LANCZOS)
    return Picture(picture.name, picture.seed, np.asarray(square))


def augment_pixels(picture: Picture) -> Picture:
    """Random flip, rotation, colour jitter and blur, drawn from the picture's own seed."""
    rng = np.random.default_rng(picture.seed)
    img = Image.fromarray(picture.pixels)
    if rng.random() < 0.5:
        img = ImageOps.mirror(img)
    img = img.rotate(float(rng.uniform(-20, 20)), Image.Resampling.BICUBIC)
    img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.7, 1.3)))
    img = ImageEnhance.Contrast(img).enhance(float(rng.uniform(0.7, 1.3)))
    img = ImageEnhance.Color(img).enhance(float(rng.uniform(0.5, 1.5)))
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 2.0))))
    return Picture(picture.name, picture.seed, np.asarray(img))


augment: Stage[Picture, Picture] = stage(augment_pixels).options(name="augment")


def encode(picture: Picture, fmt: str, quality: int) -> Encoded:
    """Encode pixels to ``fmt`` (``"webp"``, ``"jpeg"`` or ``"png"``); the file name gets the
    format's extension."""
    img = Image.fromarray(picture.pixels)
    pillow_format, extension = FORMATS[fmt]
    data = _save(img, pillow_format, quality=quality)
    return Encoded(f"{picture.name}.{extension}", picture.seed, data)


def write(item: Encoded, folder: str) -> str:
    """Write one file into ``folder``, whole, then renamed (a reader never sees half a file);
    the file name is the stage's output."""
    directory = Path(folder)
    partial = directory / f".{item.name}.part"
    partial.write_bytes(item.data)
    partial.replace(directory / item.name)
    return item.name


def _save(img: Image.Image, fmt: str, *, quality: int) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, quality=quality)
    return buffer.getvalue()


# -- the job --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """What to make, and where."""

    size: int
    fmt: str
    quality: int
    workers: int | None  # workers of each heavy stage; None: the planner chooses


def images(
    settings: Settings, *, specs: Sequence[Spec] = (), paths: Sequence[Path] = ()
) -> Pipeline[Picture]:
    """The decoded images: synthesized from ``specs``, or read from ``paths``."""
    decoding = _hinted(partial_stage(decode, settings.size).options(name="decode"), settings)
    if paths:
        return source(paths) >> read >> decoding
    return source(specs) >> _hinted(generate, settings) >> decoding


def process(settings: Settings, folder: Path) -> Stage[Picture, str]:
    """Resize, augment, encode and write: one reusable composite stage.

    No stage says how many workers it wants: the engine's planner runs these function stages
    fused in one group of processes, one per core (``report.plan`` shows it). With
    ``--workers N`` the heavy stages (augment, encode) ask for N workers each instead.
    """
    return (
        partial_stage(resize, settings.size).options(name="resize")
        >> _hinted(augment, settings)
        >> _hinted(partial_stage(encode, settings.fmt, settings.quality), settings)
        >> partial_stage(write, str(folder)).options(name="write")
    )


def _hinted(s: Stage[A, B], settings: Settings) -> Stage[A, B]:
    """``s`` with ``settings.workers`` workers if the command line gave a number."""
    return s if settings.workers is None else s.options(workers=settings.workers)


def synthetic_specs(count: int, low: int, high: int) -> list[Spec]:
    """``count`` pictures of ``low`` to ``high`` pixels a side, the same ones on every run."""
    rng = np.random.default_rng(2026)
    sides = rng.integers(low, high + 1, (count, 2)).tolist()
    return [Spec(f"img_{i:05d}", i, w, h) for i, (w, h) in enumerate(sides)]


def input_paths(folder: Path, count: int | None) -> list[Path]:
    """The image files directly in ``folder``, by name (at most ``count``), one per stem."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.setdefault(path.stem, path)  # photo.jpg and photo.png would write one file
    paths = list(found.values())
    return paths if count is None else paths[:count]


@dataclass(frozen=True, slots=True)
class Timing:
    """How long a run took (the median of several), and how busy the rest of the machine was."""

    seconds: float
    others: float | None  # CPUs that other programs kept busy meanwhile (None: unknown)


def timed_runs(
    settings: Settings,
    folder: Path,
    *,
    pipelined: bool,
    repeat: int,
    progress: bool,
    specs: Sequence[Spec],
    paths: Sequence[Path],
) -> tuple[Timing, list[str], Pipeline[str]]:
    """``repeat`` runs, each into an emptied ``folder``: the median timing, the file names
    written and the pipeline (its ``last_report`` is the last run's)."""
    seconds: list[float] = []
    others: list[float] = []
    names: list[str] = []
    pipeline = images(settings, specs=specs, paths=paths) >> process(settings, folder)
    for _ in range(repeat):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        machine, own, started = _machine_cpu(), _own_cpu(), time.perf_counter()
        names = pipeline.run(backend="process" if pipelined else "inline", progress=progress)
        took = time.perf_counter() - started
        seconds.append(took)
        machine_after = _machine_cpu()
        # Workers' CPU time counts in ours once they are reaped: by us, not by a forkserver.
        ours = not pipelined or multiprocessing.get_start_method() in ("fork", "spawn")
        if machine is not None and machine_after is not None and ours:
            others.append(max(0.0, machine_after - machine - (_own_cpu() - own)) / took)
    median = statistics.median(others) if others else None
    return Timing(statistics.median(seconds), median), names, pipeline


def _machine_cpu() -> float | None:
    """CPU seconds that all programs have used since boot (Linux), or None where unknown."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle ...
        idle = ticks[3] + ticks[4]  # idle and iowait
        return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _own_cpu() -> float:
    """CPU seconds used by this process and its finished children (the stage workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def compare(left: Path, right: Path, names: list[str]) -> int:
    """How many of ``names`` are byte-identical in both folders (asserting both hold them all)."""
    assert sorted(os.listdir(left)) == sorted(os.listdir(right)) == sorted(names), "files differ"
    return sum((left / n).read_bytes() == (right / n).read_bytes() for n in names)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.images",
        description="Make an image dataset sequentially and as a pipeline; compare the times.",
    )
    add = parser.add_argument
    add("--input", type=Path, help="a folder of images (default: synthesize them)")
    add("--output", type=Path, help="where to write (default: a new temporary folder)")
    add("--count", type=int, help=f"images to make (default: {DEFAULT_COUNT}, or all of --input)")
    add("--size", type=int, default=256, help="side of the square output images (256)")
    add(
        "--source-size",
        type=int,
        nargs=2,
        default=(320, 512),
        metavar=("MIN", "MAX"),
        help="sides of the synthesized images (320 512)",
    )
    add("--format", choices=sorted(FORMATS), default="webp", dest="fmt", help="(webp)")
    add("--quality", type=int, default=85, help="JPEG/WebP quality (85)")
    add("--workers", type=int, help="workers of each heavy stage (default: the planner chooses)")
    add("--mode", choices=("both", "pipelined", "sequential"), default="both", help="(both)")
    add("--repeat", type=int, default=1, help="runs per mode, the median shown (1)")
    add("--plot", type=Path, help="the run report's PNG (default: OUTPUT/report.png)")
    add("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(),
        help="live per-stage progress bars on stderr (default: when it is a terminal)")  # fmt: skip
    args = parser.parse_args(argv)
    for flag in ("count", "size", "workers", "repeat"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag} must be at least 1 (got {value})")
    if args.input is not None and not args.input.is_dir():
        parser.error(f"--input {args.input} is not a folder")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run the job sequentially and pipelined, compare, and show the pipelined run's report."""
    args = parse_args(argv)
    settings = Settings(args.size, args.fmt, args.quality, args.workers)
    paths: list[Path] = input_paths(args.input, args.count) if args.input else []
    specs = [] if args.input else synthetic_specs(args.count or DEFAULT_COUNT, *args.source_size)
    if args.input and not paths:
        msg = f"no image files in {args.input}"
        raise SystemExit(msg)
    output: Path = args.output or Path(tempfile.mkdtemp(prefix="olympipe-images-"))
    what = f"{len(paths)} images from {args.input}" if paths else f"{len(specs)} synthetic images"
    heavy = "decode" if paths else "generate"
    hints = (
        "no stage says how many workers it wants: the planner chooses"
        if settings.workers is None
        else f"{heavy}, augment and encode ask for {settings.workers} workers each"
    )
    print(
        f"{what} -> {settings.size} px {settings.fmt.upper()} in {output}\n{os.cpu_count()} cores; {hints}"
    )

    times: dict[str, Timing] = {}
    names: list[str] = []
    pipeline: Pipeline[str] | None = None
    for mode in ("sequential", "pipelined"):
        if args.mode not in ("both", mode):
            continue
        pipelined = mode == "pipelined"
        timing, names, ran = timed_runs(
            settings,
            output / mode,
            pipelined=pipelined,
            repeat=args.repeat,
            progress=args.progress,
            specs=specs,
            paths=paths,
        )
        times[mode] = timing
        pipeline = ran if pipelined else pipeline
        how = "the engine's plan, below" if pipelined else "a loop in one process"
        runs = f", median of {args.repeat} runs" if args.repeat > 1 else ""
        rate = len(names) / timing.seconds
        print(f"{mode:>10}: {timing.seconds:6.2f} s  {rate:6.1f} images/s  ({how}{runs})")

    cores = os.cpu_count() or 1
    if len(times) == 2:
        speedup = times["sequential"].seconds / times["pipelined"].seconds
        print(f"  speed-up: {speedup:.2f}x (at most {cores}x on {cores} cores)")
        same = compare(output / "sequential", output / "pipelined", names)
        print(f"same files: {len(names)} in each folder, {same} of them byte-identical")
    busy = max((t.others or 0.0 for t in times.values()), default=0.0)
    if busy >= BUSY_ELSEWHERE:
        print(
            f"note: other programs kept {busy:.1f} of the {cores} CPUs busy during these runs; "
            "the pipeline could only use the rest"
        )

    report = pipeline.last_report if pipeline is not None else None
    if report is not None:
        print(report)
        plot = args.plot or output / "report.png"
        report.plot(plot)
        print(f"plot: {plot}")
    print(f"images: {output}")


if __name__ == "__main__":
    main()
