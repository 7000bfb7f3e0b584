"""Run by test_long_runs in a process of its own, to be killed at random moments and resumed.

    python journal_child.py MODE JOURNAL OUT

MODE ``run``: ``run(journal=JOURNAL)``, then the result list, pickled, to OUT.
MODE ``stream``: ``stream(journal=JOURNAL)``, every output written to OUT as it comes, by
C code only (``os.write`` mapped over the stream, drained by a deque): Ctrl-C then lands in
the library's code, never between an output's arrival and its write.
"""

from __future__ import annotations

import collections
import functools
import os
import pickle
import sys

from olympipe_typed import Pipeline, flat_stage, source, stage

ITEMS = 2000


@stage
def work(x: int) -> bytes:
    """About 0.15 ms of CPU per item: the run lasts long enough to be killed mid-way."""
    total = 0
    for i in range(1500):
        total += (i * x) % 7
    return f"{x}:{total}\n".encode()


@flat_stage
def spread(line: bytes) -> list[bytes]:
    """No output for one item in five, two for another: outputs are not the source items."""
    x = int(line.split(b":")[0])
    if x % 5 == 0:
        return []
    if x % 5 == 1:
        return [line, b"+" + line]
    return [line]


def pipeline() -> Pipeline[bytes]:
    return source(range(ITEMS)) >> work >> spread


def main() -> None:
    mode, journal, out = sys.argv[1:4]
    if mode == "run":
        result = pipeline().run(journal=journal)
        with open(out, "wb") as file:
            pickle.dump(result, file)
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        write = functools.partial(os.write, fd)
        collections.deque(map(write, pipeline().stream(journal=journal)), maxlen=0)
    finally:
        os.close(fd)


if __name__ == "__main__":
    main()
