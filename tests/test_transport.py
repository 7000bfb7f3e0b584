"""The shared-memory transport: round trips, reuse without overwrites, and no leftover files."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import numpy as np
import pytest

from olympipe_typed import _transport
from olympipe_typed._transport import SHM_DIR, Decoder, Encoder, cleanup, seal, unseal

if TYPE_CHECKING:
    from collections.abc import Iterator
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkContext, SpawnContext

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not os.path.isdir(SHM_DIR), reason="no /dev/shm"),
]

StartMethod = Literal["fork", "spawn"]
MB4 = 4 << 20
Message = tuple[int, bool, list[Any], list[tuple[float, ...]] | None]


@pytest.fixture
def prefix() -> Iterator[str]:
    """A prefix unique to the test, whose files are removed afterwards whatever happens."""
    name = f"olympipe-test-{os.getpid()}-{uuid.uuid4().hex[:8]}-"
    yield name
    cleanup(name)


def context(method: StartMethod) -> ForkContext | SpawnContext:
    """The multiprocessing context of ``method``, typed."""
    if method == "fork":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def leftovers(prefix: str) -> list[str]:
    """The /dev/shm files whose name starts with ``prefix``."""
    return [name for name in os.listdir(SHM_DIR) if name.startswith(prefix)]


def array(i: int, size: int = MB4) -> np.ndarray[Any, np.dtype[np.float64]]:
    """An array of ``size`` bytes, every element ``i``: a torn message would show as a mix."""
    return np.full(size // 8, float(i))


def round_trip(obj: object, prefix: str) -> object:
    """``obj`` through a fresh Encoder and Decoder."""
    enc, dec = Encoder(prefix), Decoder()
    try:
        return dec.decode(enc.encode(obj))
    finally:
        enc.close()
        dec.close()


def test_encoder_keeps_small_objects_in_band(prefix: str) -> None:
    """Small objects encode to the plain pickle and decode to equal objects."""
    for obj in [None, 1, "x", [1, 2.5, "a"], {"k": (1, b"b")}, np.arange(10), bytearray(b"ab")]:
        enc = Encoder(prefix)
        data = enc.encode(obj)
        assert data == pickle.dumps(obj, protocol=5)
        out = Decoder().decode(data)
        if isinstance(obj, np.ndarray):
            np.testing.assert_array_equal(out, obj)
        else:
            assert out == obj
    assert leftovers(prefix) == []


def test_encoder_small_list_takes_the_plain_pickle_path(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1000 small ints cost one pickle.dumps: no second pickler, no segment (speed itself is
    measured by make bench, not here)."""
    import olympipe_typed._transport as transport

    def second_pass(*args: object) -> None:
        msg = "the small list was pickled a second time"
        raise AssertionError(msg)

    monkeypatch.setattr(transport, "_BytesPickler", second_pass)
    enc, items = Encoder(prefix), list(range(1000))
    assert enc.encode(items) == pickle.dumps(items, protocol=5)
    assert leftovers(prefix) == []


def test_a_message_larger_than_half_a_pipe_goes_through_a_segment(prefix: str) -> None:
    """A message of 40 kB of bytes (a PNG, say) does not fit what is left of a 64 kB pipe that
    holds one message already: it goes through a segment, and the pipe gets a header only, so
    its writer never waits for the worker to finish the item in hand. 20 kB stays in-band."""
    for size, shared in ((40_000, True), (20_000, False)):
        enc, dec = Encoder(prefix), Decoder()
        item = ("image.png", os.urandom(size))
        data = enc.encode([item])
        assert (data[:1] == b"S") is shared, size
        assert len(data) < (1024 if shared else size + 1024)
        assert dec.decode(data) == [item]
        enc.close()
        dec.close()
    assert leftovers(prefix) == []


def test_large_messages_without_big_bytes_are_pickled_twice_only_now_and_then(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message of many small objects over 32 kB is looked at for big bytes (a second
    pickling); after eight such messages in a row, only those over 256 kB are."""
    import olympipe_typed._transport as transport

    passes: list[int] = []

    class Counting(transport._BytesPickler):
        def dump(self, obj: object) -> None:
            passes.append(1)
            super().dump(obj)

    monkeypatch.setattr(transport, "_BytesPickler", Counting)
    enc, dec = Encoder(prefix), Decoder()
    small = [f"item {i}" for i in range(5000)]  # about 60 kB pickled, no bytes at all
    for _ in range(12):
        assert dec.decode(enc.encode(small)) == small
    assert len(passes) == 8
    large = small * 10  # about 300 kB: looked at again
    assert dec.decode(enc.encode(large)) == large
    assert len(passes) == 9
    enc.close()
    dec.close()


def test_once_a_message_had_big_bytes_the_next_is_pickled_once(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream of big bytes (images read from files) pays one pickling a message, not two:
    after a message that had them, the next goes to the pickler that moves them at once; a
    message without them then comes out as the plain pickle."""
    dumps: list[int] = []
    real = pickle.dumps

    def counting(obj: object, *args: Any, **kwargs: Any) -> bytes:
        dumps.append(1)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(pickle, "dumps", counting)
    enc, dec = Encoder(prefix), Decoder()
    for i in range(5):
        item = [(i, os.urandom(100_000))]
        data = enc.encode(item)
        assert data[:1] == b"S"
        assert dec.decode(data) == item
    assert len(dumps) == 1  # the first message only: the later ones went to the pickler at once
    assert enc.encode([1, 2]) == real([1, 2], protocol=5)
    enc.close()
    dec.close()
    assert leftovers(prefix) == []


def test_a_large_message_after_big_bytes_is_pickled_once(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a message that had big bytes, a large one without any (60 kB of strings) is
    pickled once, by the pickler that looks for them, and sent as it came out."""
    import olympipe_typed._transport as transport

    passes: list[str] = []
    real = pickle.dumps

    class Counting(transport._BytesPickler):
        def dump(self, obj: object) -> None:
            passes.append("by id")
            super().dump(obj)

    def counting(obj: object, *args: Any, **kwargs: Any) -> bytes:
        passes.append("plain")
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(transport, "_BytesPickler", Counting)
    monkeypatch.setattr(pickle, "dumps", counting)
    enc, dec = Encoder(prefix), Decoder()
    image = [(0, os.urandom(100_000))]
    assert dec.decode(enc.encode(image)) == image
    passes.clear()
    small = [f"item {i}" for i in range(5000)]
    data = enc.encode(small)
    assert passes == ["by id"]
    assert data == real(small, protocol=5)
    assert dec.decode(data) == small
    enc.close()
    dec.close()
    assert leftovers(prefix) == []


def test_decoder_mixed_items_round_trip(prefix: str) -> None:
    """Small items and large arrays of several dtypes and layouts come back equal and writable."""
    big: list[np.ndarray[Any, Any]] = [
        array(1),
        np.arange(300_000, dtype=np.int32).reshape(1000, 300),
        np.asfortranarray(np.ones((700, 500), dtype=np.float32)),
        np.zeros(MB4, dtype=np.uint8),
    ]
    msg = (7, True, [1, "two", *big, (3.0, None)], [(1.0, 2.0)])
    enc, dec = Encoder(prefix), Decoder()
    data = enc.encode(msg)
    assert data[:1] == b"S"
    assert len(data) < 4096  # the arrays went through shared memory, not the pipe
    seq, final, items, keys = cast("Message", dec.decode(data))
    assert (seq, final, keys) == (7, True, [(1.0, 2.0)])
    assert items[:2] == [1, "two"]
    assert items[-1] == (3.0, None)
    for sent, item in zip(big, items[2:-1], strict=True):
        got = np.asarray(item)
        assert got is item  # an array already, not just convertible to one
        assert (got.dtype, got.shape, got.flags.f_contiguous) == (
            sent.dtype,
            sent.shape,
            sent.flags.f_contiguous,
        )
        assert got.flags.writeable
        np.testing.assert_array_equal(got, sent)
    enc.close()
    dec.close()
    assert leftovers(prefix) == []


def test_decoder_bytes_payloads_round_trip(prefix: str) -> None:
    """Large and small bytes and bytearrays keep their type and content."""
    payload = [os.urandom(MB4), bytearray(os.urandom(MB4)), b"small", bytearray(b"small"), 5]
    out = round_trip(payload, prefix)
    assert out == payload
    assert isinstance(out, list)
    assert [type(x) for x in cast("list[object]", out)] == [bytes, bytearray, bytes, bytearray, int]
    assert leftovers(prefix) == []


def test_encoder_falls_back_in_band_without_shm(prefix: str) -> None:
    """With no shared-memory directory, large arrays go in-band and still round trip."""
    enc = Encoder(prefix, directory="/nonexistent/shm")
    data = enc.encode([array(3)])
    assert data[:2] == b"\x80\x05"
    got = Decoder().decode(data)
    assert isinstance(got, list)
    np.testing.assert_array_equal(got[0], array(3))  # pyright: ignore[reportUnknownArgumentType]


def test_encoder_grows_reused_segment(prefix: str) -> None:
    """A reused segment grows for a bigger message, and the decoder remaps it."""
    enc, dec = Encoder(prefix, slots=1), Decoder()
    for i, size in enumerate([MB4 // 8, MB4, MB4 // 4, 2 * MB4]):
        got = dec.decode(enc.encode([array(i, size)]))
        assert isinstance(got, list)
        np.testing.assert_array_equal(got[0], array(i, size))  # pyright: ignore[reportUnknownArgumentType]
    assert len(leftovers(prefix)) == 1
    enc.close()
    dec.close()
    assert leftovers(prefix) == []


def test_encoder_never_reuses_unconsumed_segment(prefix: str) -> None:
    """With every segment unread, the encoder goes in-band rather than overwrite one."""
    enc, dec = Encoder(prefix, slots=2, wait=0.0), Decoder()
    sent = [enc.encode([array(i)]) for i in range(3)]
    assert [d[:1] for d in sent] == [b"S", b"S", b"\x80"]
    for i, data in enumerate(sent):
        got = dec.decode(data)
        assert isinstance(got, list)
        np.testing.assert_array_equal(got[0], array(i))  # pyright: ignore[reportUnknownArgumentType]
    assert enc.encode([array(9)])[:1] == b"S"  # consumed: reused
    enc.close()
    dec.close()


def test_decoder_rejects_overwritten_segment(prefix: str) -> None:
    """A message whose segment was rewritten since raises instead of returning other data."""
    enc, dec = Encoder(prefix, slots=1), Decoder()
    first = enc.encode([array(1)])
    dec.decode(first)
    enc.encode([array(2)])
    with pytest.raises(RuntimeError, match="overwritten"):
        dec.decode(first)
    enc.close()
    dec.close()


def produce(conn: Connection, prefix: str, count: int, slots: int, wait: float) -> None:
    """Sends ``count`` messages of a 4 MB array filled with their number, then b"E"."""
    enc = Encoder(prefix, slots=slots, wait=wait)
    for i in range(count):
        conn.send_bytes(enc.encode((i, True, [f"item {i}", array(i)], None)))
    conn.send_bytes(b"E")
    enc.close()


class Reader(Protocol):
    """A pipe's reading end, whatever platform the type checker assumes."""

    def recv_bytes(self) -> bytes: ...


def consume(conn: Reader, delay: float) -> tuple[int, int]:
    """Checks every message until b"E", sleeping ``delay`` before each: (messages, in-band)."""
    dec, count, inband = Decoder(), 0, 0
    while (data := conn.recv_bytes()) != b"E":
        time.sleep(delay)
        inband += data[:1] != b"S"
        seq, _, items, _ = cast("Message", dec.decode(data))
        assert seq == count
        assert items[0] == f"item {count}"
        assert (items[1] == float(count)).all()
        count += 1
    dec.close()
    return count, inband


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize(("slots", "wait", "delay"), [(8, 0.05, 0.0), (2, 0.002, 0.01)])
def test_transport_pipe_between_processes(
    prefix: str, method: StartMethod, slots: int, wait: float, delay: float
) -> None:
    """Messages from another process arrive intact and in order, even to a slow reader."""
    ctx = context(method)
    reader, writer = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=produce, args=(writer, prefix, 60, slots, wait))
    proc.start()
    writer.close()
    count, inband = consume(reader, delay)
    assert count == 60
    assert inband < 60  # shared memory was used...
    assert inband > 0 or delay == 0  # ...and a slow reader made the writer fall back
    proc.join(30)
    assert proc.exitcode == 0
    assert leftovers(prefix) == []  # read segments were unlinked by their encoder or by us
    assert cleanup(prefix) == 0


def hold_segments(conn: Connection, prefix: str) -> None:
    """Fills three segments nobody reads, says so, then waits to be killed."""
    enc = Encoder(prefix, slots=3, wait=0.0)
    for i in range(3):
        enc.encode([array(i)])
    conn.send_bytes(b"ready")
    time.sleep(60)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_cleanup_removes_segments_of_killed_process(prefix: str, method: StartMethod) -> None:
    """After a worker is SIGKILLed, cleanup removes its segments and reports how many."""
    ctx = context(method)
    reader, writer = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=hold_segments, args=(writer, prefix))
    proc.start()
    assert reader.recv_bytes() == b"ready"
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert len(leftovers(prefix)) == 3
    assert cleanup(prefix) == 3
    assert leftovers(prefix) == []


def test_a_sealed_prefix_gets_no_new_segment(prefix: str) -> None:
    """Once ``seal(prefix)`` has returned, large arrays under that prefix go in-band, so a
    cleanup after it is final (a feeder thread still encoding during a SIGTERM teardown);
    another prefix is not affected, and ``unseal`` lifts it."""
    seal(prefix)
    try:
        got = Decoder().decode(Encoder(prefix).encode([array(1)]))
        assert isinstance(got, list)
        np.testing.assert_array_equal(got[0], array(1))  # pyright: ignore[reportUnknownArgumentType]
        assert leftovers(prefix) == []
        other = f"{prefix}other-"
        enc, dec = Encoder(other), Decoder()
        dec.decode(enc.encode([array(2)]))
        assert len(leftovers(other)) == 1
        enc.close()
        dec.close()
    finally:
        unseal(prefix)
    enc = Encoder(prefix)
    enc.encode([array(3)])
    assert len(leftovers(prefix)) == 1
    enc.close()


def test_seal_waits_for_a_segment_being_created(prefix: str) -> None:
    """``seal`` returns only once no thread is creating a segment (or after its timeout, so
    that a signal handler that interrupted the creating thread itself cannot hang)."""
    held, release = threading.Event(), threading.Event()

    def create() -> None:
        with _transport._creating:
            held.set()
            release.wait(10)

    creator = threading.Thread(target=create)
    creator.start()
    assert held.wait(10)
    try:
        started = time.monotonic()
        seal(prefix, timeout=0.2)  # still held: returns at its timeout
        assert time.monotonic() - started >= 0.2
        releaser = threading.Timer(0.3, release.set)
        releaser.start()
        started = time.monotonic()
        seal(prefix, timeout=10)  # returns when the creation ends
        assert 0.3 <= time.monotonic() - started < 10
    finally:
        release.set()
        creator.join(10)
        unseal(prefix)


def test_cleanup_refuses_empty_prefix() -> None:
    """An empty prefix would remove every file of /dev/shm: it is refused."""
    with pytest.raises(ValueError, match="prefix"):
        cleanup("")


def test_borrowed_buffers_are_views_until_settled(prefix: str) -> None:
    """A borrowed message's arrays are views of the segment (writable, no copy); the segment is
    reused only after settle() finds every view gone."""
    enc, dec = Encoder(prefix, slots=1, wait=0.01), Decoder()
    try:
        got = cast(
            "np.ndarray[Any, np.dtype[np.float64]]", dec.decode(enc.encode(array(1)), borrow=True)
        )
        assert not got.flags.owndata
        got[0] = 7.0  # writable: a stage may work in place
        dec.settle()  # `got` is alive: the segment stays lent
        assert enc.encode(array(2))[:1] != b"S"  # the only segment is busy: sent in-band
        assert float(got[1]) == 1.0
        del got
        dec.settle()
        assert enc.encode(array(3))[:1] == b"S"  # free again
    finally:
        enc.close()
        dec.close()


def test_a_kept_view_pins_its_segment_whatever_derives_from_it(prefix: str) -> None:
    """Views derived from a borrowed array (a cast memoryview, a slice) keep the segment lent:
    it is never overwritten under them."""
    enc, dec = Encoder(prefix, slots=1, wait=0.01), Decoder()
    try:
        got = cast(
            "np.ndarray[Any, np.dtype[np.float64]]", dec.decode(enc.encode(array(5)), borrow=True)
        )
        derived = got.data.cast("B")[8:16]
        del got
        dec.settle()
        assert enc.encode(array(6))[:1] != b"S"
        assert np.frombuffer(derived, dtype=np.float64)[0] == 5.0
        del derived
        dec.settle()
        assert enc.encode(array(6))[:1] == b"S"
    finally:
        enc.close()
        dec.close()


@pytest.mark.parametrize("with_numpy", [True, False], ids=["numpy-copies", "bytearray-copies"])
def test_copies_are_the_readers_own_with_or_without_numpy(
    prefix: str, with_numpy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both copy paths (numpy's, without the GIL; bytearray's) give writable arrays of their own."""
    from olympipe_typed import _transport

    if not with_numpy:
        monkeypatch.setattr(_transport, "_numpy", lambda: None)
    enc, dec = Encoder(prefix), Decoder()
    sent: list[np.ndarray[Any, Any]] = [
        array(1),
        np.arange(1000, dtype=np.int16),
        array(2, MB4 + 8),
    ]
    data = enc.encode(sent)
    assert data[:1] == b"S"
    got = cast("list[np.ndarray[Any, Any]]", dec.decode(data))
    later = enc.encode([array(9), array(9), array(9, size=MB4 + 8)])  # reuses the segment
    for s, g in zip(sent, got, strict=True):
        assert g.flags.writeable
        assert g.dtype == s.dtype
        np.testing.assert_array_equal(g, s)  # not overwritten by the next message
    got[0][:] = 5.0
    assert float(got[0][0]) == 5.0
    assert float(cast("list[np.ndarray[Any, Any]]", dec.decode(later))[0][0]) == 9.0
    enc.close()
    dec.close()
    assert leftovers(prefix) == []
