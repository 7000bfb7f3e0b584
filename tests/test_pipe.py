"""The process backend's own pipes: framing, ends, waits, and a run that leaves
``multiprocessing.connection`` (and what it imports) unimported."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Literal

import pytest

from olympipe_typed.backends.process import pipe as pipe_module
from olympipe_typed.backends.process.pipe import PipeEnd, join, pipe, wait

if TYPE_CHECKING:
    from collections.abc import Iterator
    from multiprocessing.context import ForkContext, ForkServerContext, SpawnContext

pytestmark = pytest.mark.timeout(60)

Method = Literal["fork", "spawn", "forkserver"]
# Around the two thresholds: one write up to 16 KiB, header and body apart above; and a
# message larger than a pipe's 64 KiB buffer, which the reader takes in several reads.
SIZES = [0, 1, 16383, 16384, 16385, 65536, 1 << 20]


def context(method: Method) -> ForkContext | SpawnContext | ForkServerContext:
    if method == "fork":
        return multiprocessing.get_context("fork")
    if method == "spawn":
        return multiprocessing.get_context("spawn")
    return multiprocessing.get_context("forkserver")


def payload(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


@pytest.fixture
def ends() -> Iterator[tuple[PipeEnd, PipeEnd]]:
    r, w = pipe()
    yield r, w
    r.close()
    w.close()


def echo_sizes(reader: PipeEnd, writer: PipeEnd, others: list[PipeEnd]) -> None:
    """In the child: answer each message with its length and its last byte, until the end.
    A forked child has the parent's ends too: it closes them, or its reader never ends."""
    for end in others:
        end.close()
    while True:
        try:
            data = reader.recv_bytes()
        except EOFError:
            break
        writer.send_bytes(f"{len(data)}:{data[-1:].hex()}".encode())
    writer.close()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_messages_cross_a_process_under_every_start_method(method: Method) -> None:
    """Both ends reach the child (spawn and forkserver pickle them), messages keep their
    bounds and bytes, and the child's exit closes its end: EOFError, not a hang."""
    ctx = context(method)
    to_child_r, to_child_w = pipe()
    from_child_r, from_child_w = pipe()
    others = [to_child_w, from_child_r]
    proc = ctx.Process(target=echo_sizes, args=(to_child_r, from_child_w, others))
    proc.start()
    to_child_r.close()
    from_child_w.close()
    try:
        for size in SIZES:
            to_child_w.send_bytes(payload(size))
            assert from_child_r.recv_bytes() == f"{size}:{payload(size)[-1:].hex()}".encode()
        to_child_w.close()
        with pytest.raises(EOFError):
            from_child_r.recv_bytes()
    finally:
        join(proc, 10.0)
        from_child_r.close()
        to_child_w.close()
    assert proc.exitcode == 0


@pytest.mark.parametrize("size", SIZES)
def test_framing_is_multiprocessings(size: int) -> None:
    """A message either way between a PipeEnd and a multiprocessing Connection arrives whole."""
    data = payload(size)
    r, w = os.pipe()
    mp_reader = Connection(r, writable=False)
    ours = PipeEnd(w, readable=False, writable=True)
    # A message larger than the pipe's buffer is written while it is read: from a thread.
    writer = threading.Thread(target=ours.send_bytes, args=(memoryview(data),))
    writer.start()
    try:
        assert mp_reader.recv_bytes() == data
    finally:
        writer.join(10.0)
        mp_reader.close()
        ours.close()
    r, w = os.pipe()
    mp_writer = Connection(w, readable=False)
    ours = PipeEnd(r, readable=True, writable=False)
    writer = threading.Thread(target=mp_writer.send_bytes, args=(data,))
    writer.start()
    try:
        assert ours.recv_bytes() == data
    finally:
        writer.join(10.0)
        mp_writer.close()
        ours.close()


def test_the_8_byte_length_of_a_huge_message(
    ends: tuple[PipeEnd, PipeEnd], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above 2 GiB the length travels as -1 and 8 bytes (tried here on a small message, the
    threshold lowered), as multiprocessing reads it."""
    r, w = ends
    monkeypatch.setattr(pipe_module, "_HUGE", 10)
    w.send_bytes(b"0123456789abcdef")
    raw = os.read(r.fileno(), 12)
    assert raw == b"\xff\xff\xff\xff" + (16).to_bytes(8, "big")
    assert os.read(r.fileno(), 16) == b"0123456789abcdef"
    os.write(w.fileno(), raw + b"0123456789abcdef")
    assert r.recv_bytes() == b"0123456789abcdef"
    rr, ww = os.pipe()
    mp_reader = Connection(rr, writable=False)
    try:
        os.write(ww, raw + b"0123456789abcdef")
        assert mp_reader.recv_bytes() == b"0123456789abcdef"
    finally:
        mp_reader.close()
        os.close(ww)


def test_end_of_pipe_between_messages_and_inside_one(ends: tuple[PipeEnd, PipeEnd]) -> None:
    """EOFError once the writer is gone and every message read; OSError if it went part-way
    through one: a message cut short never passes for the end of the stream."""
    r, w = ends
    w.send_bytes(b"whole")
    os.write(w.fileno(), (10).to_bytes(4, "big") + b"cut")
    w.close()
    assert r.recv_bytes() == b"whole"
    with pytest.raises(OSError, match="end of file during message"):
        r.recv_bytes()
    r2, w2 = pipe()
    os.write(w2.fileno(), b"\x00\x00")  # half a header
    w2.close()
    with pytest.raises(OSError, match="end of file during message"):
        r2.recv_bytes()
    r2.close()
    r3, w3 = pipe()
    w3.close()
    with pytest.raises(EOFError):
        r3.recv_bytes()
    r3.close()


def test_a_closed_reader_breaks_the_writer(ends: tuple[PipeEnd, PipeEnd]) -> None:
    r, w = ends
    r.close()
    with pytest.raises(BrokenPipeError):
        w.send_bytes(b"x")


def test_a_closed_end_says_so(ends: tuple[PipeEnd, PipeEnd]) -> None:
    r, w = ends
    assert [r.closed, w.closed] == [False, False]
    r.close()
    r.close()  # twice is fine
    assert r.closed
    with pytest.raises(OSError, match="handle is closed"):
        r.fileno()
    with pytest.raises(OSError, match="handle is closed"):
        r.recv_bytes()
    with pytest.raises(OSError, match="handle is closed"):
        r.poll()
    assert "fd=None" in repr(r)
    assert "write" in repr(w)


def test_poll_and_wait(ends: tuple[PipeEnd, PipeEnd]) -> None:
    """Nothing to read: not ready, after the timeout; a message or the writer's end: ready."""
    r, w = ends
    r2, w2 = pipe()
    try:
        assert not r.poll()
        start = time.monotonic()
        assert wait([r, r2], 0.05) == []
        assert time.monotonic() - start >= 0.04
        w.send_bytes(b"x")
        assert r.poll(None)
        assert wait([r, r2], 1.0) == [r]
        w2.close()
        assert set(map(id, wait([r, r2], 1.0))) == {id(r), id(r2)}
        assert r2.poll(0)
    finally:
        r2.close()


def sleep_then_exit(seconds: float) -> None:
    time.sleep(seconds)


def test_join_waits_at_most_its_timeout_and_reaps_an_exited_worker() -> None:
    proc = multiprocessing.get_context("fork").Process(target=sleep_then_exit, args=(30.0,))
    proc.start()
    try:
        start = time.monotonic()
        join(proc, 0.1)
        assert time.monotonic() - start < 5.0
        assert proc.is_alive()
        proc.kill()  # not SIGTERM: a handler of the test process (Ray's) is the child's too
        join(proc, 10.0)
        assert not proc.is_alive()
        assert proc.exitcode == -9
    finally:
        proc.kill()
        proc.join()


def test_a_process_run_does_not_import_multiprocessing_connection() -> None:
    """Under fork (the default here), a whole run leaves multiprocessing.connection and what it
    imports unloaded: about 7 ms of start-up on this project's machine."""
    code = """
import multiprocessing, sys
multiprocessing.set_start_method("fork")
from olympipe_typed import source, stage
def f(x: int) -> int:
    return x + 1
s = stage(f)
assert (source(range(50)) >> s >> s.options(workers=2) >> s).run() == list(range(3, 53))
heavy = ["multiprocessing.connection", "tempfile", "shutil", "random", "bz2", "lzma"]
print(sorted(name for name in heavy if name in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]", out.stderr
