"""Run by test_process_backend under the start method named in ``argv[1]``: whether malloc
keeps a freed 24 MB block for reuse, in a worker process and in the caller. Prints
``worker <bytes mapped apart> <free bytes kept>`` and ``caller ...`` (glibc's mallinfo2)."""

from __future__ import annotations

import ctypes
import multiprocessing
import sys
import time

from olympipe_typed import source, stage

SIZE = 24 << 20


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def glibc_with_mallinfo2() -> bool:
    """Whether this process's C library is glibc 2.33 or later (it has ``mallinfo2``)."""
    try:
        ctypes.CDLL(None).mallinfo2  # noqa: B018 - the lookup is the question
    except (AttributeError, OSError):
        return False
    return True


def probe(x: int) -> tuple[int, int]:
    """Allocate, fill and free a 24 MB block: (bytes malloc mapped apart for it, bytes of free
    heap kept afterwards). Item 0 is a tenth of a second of work first, item 1 is not: a
    worker tunes its malloc once it has worked a while."""
    if x == 0:
        time.sleep(0.1)
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = MallInfo2
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(SIZE)
    mapped = libc.mallinfo2().hblkhd - before
    ctypes.memset(block, 1, SIZE)
    libc.free(block)
    return mapped, libc.mallinfo2().keepcost


def main() -> None:
    multiprocessing.set_start_method(sys.argv[1])
    out = (source([0, 1]) >> stage(probe).options(workers=1)).run()
    print("worker", *out[1])
    print("caller", *probe(0))


if __name__ == "__main__":
    main()
