"""Run olympict 2.0.0 (an olympipe-based library) on this engine; tests/test_olympict.py runs it.

    python olympict_run.py cli ARGS...        # olympict's command line
    python olympict_run.py readme ROOT        # olympict's README examples, checked

Both first register ``olympipe_typed.olympipe`` as ``olympipe``: olympict is installed
without its olympipe dependency, so nothing else could answer ``import olympipe``. The
README examples are checked against a plain loop: olympict's own operations applied one
image after another, with no pipeline, written to another folder.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

import olympipe_typed.olympipe

olympipe_typed.olympipe.install()

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def _lib(name: str) -> Any:
    """An olympict module (olympict is untyped, and installed by the test only)."""
    from importlib import import_module

    return import_module(name)


_olympict = _lib("olympict")
ImagePipeline, OlympImage, OPipeline = (
    _olympict.ImagePipeline,
    _olympict.OlympImage,
    _olympict.OPipeline,
)
send_json_response = _olympict.send_json_response
ImgRescaler = _lib("olympict.helpers.img_rescaler").ImgRescaler
Resizer = _lib("olympict.helpers.img_resizer").Resizer
ImTools = _lib("olympict.image_tools").ImTools
BBoxAbsolutePainter = _lib("olympict.utils.bbox_abs_painter").BBoxAbsolutePainter
CropOperation = _lib("olympict.utils.crop_op").CropOperation
FolderSaver = _lib("olympict.utils.saver").FolderSaver

Step = Callable[[Any], Any]


def fail_on_odd(value: int) -> int:
    if value % 2:
        raise ValueError(value)
    return value


def drop(_item: int, _exc: Exception) -> None:
    return None


def split_even_odd(value: int) -> tuple[int | None, int | None]:
    if value % 2 == 0:
        return (value, None)
    return (None, value)


def swap_channels(img: Any) -> Any:
    img[:, :, 1] = (img[:, :, 0] + img[:, :, 2]) / 2
    return img


def my_bboxes(o: Any) -> list[Any]:
    # olympict 2.0.0's code reads (x1, y1, x2, y2, label, score); its README shows pairs.
    h, w = o.img.shape[:2]
    return [(2, 3, w // 2, h // 2, "box", 0.5)]


# The README's lambdas, named: the checkers see olympict's untyped methods take them.
def add(item: int, acc: int) -> int:
    return acc + item


def not_b(item: str) -> bool:
    return item != "B"


def double(value: int) -> int:
    return value * 2


def collect(item: int, acc: list[int]) -> list[int]:
    return [*acc, item]


def backwards(acc: list[int]) -> Iterator[int]:
    return reversed(acc)


def flip(x: Any) -> Any:
    return x[::-1, :, :]


def add_echo(packet: tuple[Any, dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
    return (packet[0], {**packet[1], "echo": True})


def answer(packet: tuple[Any, dict[str, Any]]) -> Any:
    return send_json_response(packet[0], packet[1])


def write_images(folder: str, count: int) -> None:
    """PNGs of random pixels and different sizes."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(count):
        img = rng.integers(0, 255, (60 + 7 * i, 80 + 3 * i, 3), dtype=np.uint8)
        assert cv2.imwrite(os.path.join(folder, f"img_{i:02d}.png"), img)


def plain_loop(src: str, out: str, steps: list[Step]) -> None:
    """What a pipeline of ``steps`` then ``save_to_folder(out)`` should write."""
    saver = FolderSaver(out)
    for name in sorted(os.listdir(src)):
        o = OlympImage.load(os.path.join(src, name))
        for step in steps:
            o = step(o)
        saver.save_to_folder(o)


def same_files(a: str, b: str) -> None:
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b)), (names, sorted(os.listdir(b)))
    assert names, f"{a} is empty"
    for name in names:
        with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
            assert fa.read() == fb.read(), f"{name} differs between {a} and {b}"


def opipeline_examples(root: str) -> None:
    total = OPipeline(data=range(5)).wait_and_reduce(0, add)
    assert total == sum(range(5)), total
    values = (
        OPipeline(data=["a", "b", "c"]).task(str.upper).filter(not_b).limit(2).wait_for_results()
    )
    assert values == ["A", "C"], values
    kept = OPipeline(data=range(6)).task(fail_on_odd, on_error=drop).wait_for_results()
    assert kept == [0, 2, 4], kept
    evens, odds = OPipeline(data=range(6)).split(split_even_odd)
    merged = evens.gather(odds).wait_for_results()
    assert sorted(merged) == list(range(6)), merged
    chain = (
        OPipeline(data=[1, 2, 3])
        .cached_task(double, cache_dir=os.path.join(root, "cache"))
        .uncache()
        .checkpoint([], collect, backwards)
        .timeout(30)
    )
    assert chain.wait_for_results() == [6, 4, 2]
    assert chain.debug().start().wait_for_completion() is None  # the README's ending


def image_examples(root: str) -> None:
    src = os.path.join(root, "images")
    write_images(src, 9)
    pipe = ImagePipeline.load_folder(src).timeout(30).debug()
    assert isinstance(pipe, ImagePipeline)

    cases: list[tuple[str, Callable[[Any], Any], list[Step]]] = [
        ("resized", lambda p: p.resize((64, 48)), [Resizer((64, 48)).process]),
        (
            "padded",
            lambda p: p.resize((64, 64), pad_color=(255, 0, 0), count=2),
            [Resizer((64, 64), (255, 0, 0)).process],
        ),
        ("half", lambda p: p.rescale((0.5, 0.5)), [ImgRescaler((0.5, 0.5)).process]),
        ("swapped", lambda p: p.task_img(swap_channels), [_on_img(swap_channels)]),
        (
            "cropped",
            lambda p: p.crop(left=5, top=6, right=7, bottom=8),
            [CropOperation(left=5, top=6, right=7, bottom=8).task],
        ),
        (
            "boxes",
            lambda p: p.draw_bboxes(my_bboxes),
            [BBoxAbsolutePainter(my_bboxes, ImTools.font_scale).draw_absolute],
        ),
    ]
    for name, build, steps in cases:
        pipeline = build(ImagePipeline.load_folder(src))
        pipeline.save_to_folder(os.path.join(root, name)).wait_for_completion()
        plain_loop(src, os.path.join(root, f"{name}-loop"), steps)
        same_files(os.path.join(root, name), os.path.join(root, f"{name}-loop"))

    sampled = os.path.join(root, "sampled")
    ImagePipeline.load_folder(src).keep_each_frame_in(keep_n=1, discard_n=2).save_to_folder(
        sampled
    ).wait_for_completion()
    assert sorted(os.listdir(sampled)) == [f"img_{i:02d}.png" for i in (0, 3, 6)]

    results = ImagePipeline.load_folder(src).resize((24, 24)).wait_for_results()
    assert [os.path.basename(o.path) for o in results] == sorted(os.listdir(src))
    assert all(o.img.shape == (24, 24, 3) for o in results)

    frames = os.path.join(root, "frames")
    ImagePipeline(_generated(root, 12)).task_img(flip).save_to_folder(frames).wait_for_completion()
    for i in range(12):
        img = cv2.imread(os.path.join(frames, f"{i}.png"))
        assert img is not None, i
        assert img[31 - i, :, :].min() == 255, i


def _on_img(fn: Callable[[Any], Any]) -> Step:
    def step(o: Any) -> Any:
        o.img = fn(o.img)
        return o

    return step


def _generated(root: str, count: int) -> Iterator[Any]:
    for i in range(count):
        img = np.zeros((32, 32, 3), np.uint8)
        img[i % 32, :, :] = 255
        o = OlympImage()
        o.path = os.path.join(root, f"{i}.png")
        o.img = img
        yield o


def parse(data: dict[str, Any]) -> dict[str, Any]:
    return data


_CLIENT = """
import json, sys, time, urllib.request
port, answers, deadline = sys.argv[1], {}, time.monotonic() + 20
for i in range(5):
    while True:
        req = urllib.request.Request(f"http://localhost:{port}/echo", b'{"x": %d}' % i)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                answers[i] = r.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # not listening yet
print(json.dumps(answers))
"""


def server_example() -> None:
    """The README's echo server, asked by a client in another process (a thread of this
    one could hold a lock, an import's say, when the workers are forked)."""
    import json
    import subprocess

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    client = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, str(port)], stdout=subprocess.PIPE, text=True
    )
    (
        OPipeline.server([("POST", "/echo", parse)], port=port, inactivity_timeout=2.0)
        .task(add_echo)
        .task(answer)
        .wait_for_completion()
    )
    out, _ = client.communicate(timeout=30)
    assert client.returncode == 0, client.returncode
    answers = {int(k): v for k, v in json.loads(out).items()}
    assert answers == {i: f'{{"x": {i}, "echo": true}}' for i in range(5)}, answers


def main() -> int:
    olympipe = _lib("olympipe")
    assert olympipe is olympipe_typed.olympipe, olympipe
    if sys.argv[1] == "cli":
        sys.argv = ["olympict", *sys.argv[2:]]
        _lib("olympict.cli").main()  # click's: exits the interpreter, with the command's status
        return 1
    root = sys.argv[2]
    opipeline_examples(root)
    image_examples(root)
    server_example()
    print("olympict README examples: all checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
