"""Message encoding that moves large buffers through shared memory instead of the pipe.

``Encoder.encode`` pickles with protocol 5. Without out-of-band buffers (or with less than
``threshold`` bytes of them) the result is the plain pickle: small messages cost what they cost
before. Otherwise the buffers are copied into a file under ``/dev/shm`` and the returned bytes
are ``b"S"`` + a header (segment name, generation, offsets and lengths) + the in-band pickle.
Immutable ``bytes`` are never out-of-band in pickle, so a large in-band result is pickled again
with a ``persistent_id`` that moves big ``bytes`` to the segment as well (after eight such
messages in a row with none, only those of 256 kB and more are tried: a stream of many small
objects pays its second pickling rarely).

The threshold, 32 kB, is half a pipe (64 kB): a worker has one message queued while it works on
another, and a message that does not fit in what is left of its pipe blocks its writer until
the worker has finished the item in hand. A feeder blocked on one worker sends nothing to the
others meanwhile: with the image job's PNGs of 50-180 kB in-band (the threshold was 256 kB), the
feeder waited 15-40 ms in one write after another and its workers found no message waiting at
one read in eight.

Reuse: each Encoder keeps a ring of at most ``slots`` segments. A segment starts with a 64-byte
header: the generation the encoder last wrote, the generation the decoder last consumed and an
"orphaned" flag. The encoder writes into a segment only when consumed == written, so it never
overwrites data not yet read. With every segment busy it waits up to ``wait`` seconds, then
sends in-band: a blocking ``send_bytes`` is the back-pressure again, memory stays bounded and a
reader that died cannot hang us. The decoder checks the generation before and after copying and
raises rather than return torn data. Each encoded message must be decoded exactly once.
Ordering relies on the pipe (a syscall on both sides) for the data, and on x86-64 TSO for the
"consumed" store made after the copy (a store is never reordered before earlier loads).

Borrowing (``decode(data, borrow=True)``, for workers of stateless stages): the buffers are
views of the segment, no copy, and the segment is marked consumed by ``settle()`` once nothing
refers to the views any more: every view of a message, however derived (slices, casts,
arrays built on them), holds a reference to the message's own managed buffer, whose reference
count ``settle()`` reads. A view kept by the stage pins its segment, never corrupts it.

Copy or views: otherwise the decoder copies each buffer out into a fresh buffer and marks the
segment consumed at once. Views would pin the segment for as long as any returned array lives
(possibly forever: the encoder would then need new segments, which fault just the same) and
mmap.close() fails while views exist. The copy is cheap: glibc keeps freed multi-MB blocks on
its heap (its mmap threshold adapts), so steady-state copies land on already-mapped pages.
Copies without the GIL: when this process has imported numpy (as it has when items are arrays),
both copies go through ``numpy.copyto``, which releases the GIL, and the fresh buffer is an
uninitialised ``numpy.empty`` uint8 array (a fresh ``bytearray`` is either filled by a copy that
holds the GIL or zero-filled first, 60 us per 4 MB under the GIL). The caller's feeder thread
copies in while its result thread copies out; under the GIL the two copies took turns. 4 MB
arrays through 2 identity stages, interleaved A/B: +6% MB/s (medians of 10 rounds, twice).
Without numpy the buffer is a ``bytearray``, copied under the GIL.
Measured with /tmp/transport_bench.py (200 x 4 MB arrays between two processes, medians of 3,
noisy 2-core VM): pickle + send_bytes 390-510 MB/s; Encoder/Decoder 3-10 GB/s (fork and spawn
alike); unsafe views instead of the copy 12-16 GB/s. The transport is no longer the bottleneck.

Names are ``<prefix><pid>-<random>-<n>``. A segment whose encoder closed is unlinked by whoever
is last (encoder close, or the decoder reading its last message); ``cleanup(prefix)`` removes
what a run left (a SIGKILLed worker, a message never read). An Encoder is used by one thread;
``seal(prefix)`` may be called from any thread (or a signal handler) so that no thread of this
process creates a segment under ``prefix`` once it returns: the cleanup that follows is final.
"""

from __future__ import annotations

import contextlib
import gc
import io
import mmap
import os
import pickle
import struct
import sys
import threading
import time
from typing import Any, Final

SHM_DIR: Final = "/dev/shm"
_HEAD: Final = 64  # header: written gen, consumed gen, orphaned flag; data starts a line after
_WRITTEN, _CONSUMED, _ORPHANED = 0, 8, 16
SHARED: Final = b"S"  # a protocol-5 pickle always starts with b"\x80": never ambiguous
_MAGIC: Final = SHARED
_FIXED: Final = struct.Struct("<cQIIH")  # magic, gen, out-of-band count, bytes count, name len
_ALIGN: Final = 64  # buffer offsets: cache-line aligned, enough for any numpy dtype
THRESHOLD: Final = 32 * 1024  # bytes of buffers from which a message goes through a segment
_RETRY: Final = 256 * 1024  # ... and from which big bytes are looked for after many misses
_MISSES: Final = 8  # messages in a row with no big bytes: look only in those over _RETRY


def _numpy() -> Any:
    """numpy if this process has imported it, else None (never imported here: it costs 50 ms)."""
    return sys.modules.get("numpy")


def _copy_in(mm: mmap.mmap, offset: int, raw: memoryview) -> None:
    """``raw`` written at ``offset``: without the GIL when numpy is loaded."""
    np = _numpy()
    if np is None or not raw.nbytes:
        mm[offset : offset + raw.nbytes] = raw
    else:
        np.copyto(np.frombuffer(mm, np.uint8, raw.nbytes, offset), np.frombuffer(raw, np.uint8))


def _copy_out(view: memoryview, offset: int, size: int) -> Any:
    """A writable copy of ``size`` bytes at ``offset``: without the GIL when numpy is loaded."""
    np = _numpy()
    if np is None or not size:
        return bytearray(view[offset : offset + size])
    out = np.empty(size, np.uint8)
    np.copyto(out, np.frombuffer(view, np.uint8, size, offset))
    return out


def _round(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _map(path: str, size: int, *, create: bool) -> mmap.mmap:
    """``path`` mapped read-write, created (exclusively) or grown to ``size`` bytes first."""
    fd = os.open(path, os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0), 0o600)
    try:
        if size:
            # fallocate, not just ftruncate: a full tmpfs (Docker gives 64 MB) then fails here
            # with ENOSPC instead of killing us with SIGBUS on the first write to the mapping.
            os.posix_fallocate(fd, 0, size)
        # MAP_POPULATE: map every page now, in one call, rather than fault them one by one.
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        return mmap.mmap(fd, size or os.fstat(fd).st_size, flags=flags)
    finally:
        os.close(fd)


class _Segment:
    __slots__ = ("gen", "mm", "path")

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.mm = _map(path, size, create=True)
        self.gen = 0

    def free(self) -> bool:
        written, consumed = struct.unpack_from("<QQ", self.mm, _WRITTEN)
        return bool(written == consumed)


class _BytesPickler(pickle.Pickler):
    """Moves ``bytes`` of at least ``min_size`` out-of-band by persistent id."""

    def __init__(self, file: io.BytesIO, oob: list[pickle.PickleBuffer], min_size: int) -> None:
        super().__init__(file, protocol=5, buffer_callback=oob.append)
        self.big: list[bytes] = []
        self.min_size = min_size

    def persistent_id(self, obj: object) -> int | None:
        if type(obj) is bytes and len(obj) >= self.min_size:
            self.big.append(obj)
            return len(self.big) - 1
        return None


class _BytesUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, buffers: list[Any], big: list[bytes]) -> None:
        super().__init__(io.BytesIO(data), buffers=buffers)
        self.big = big

    def persistent_load(self, pid: Any) -> bytes:
        return self.big[int(pid)]


class Encoder:
    """Encodes messages for one sending pipe end; create it in the process that sends."""

    def __init__(
        self,
        prefix: str,
        *,
        threshold: int = THRESHOLD,
        slots: int = 8,
        wait: float = 0.05,
        directory: str = SHM_DIR,
    ) -> None:
        self.threshold = threshold  # out-of-band bytes below which a message stays in-band
        self.slots = slots  # segments at most: memory is bounded by slots x largest message
        self.wait = wait  # seconds to wait for a segment to be consumed before going in-band
        self._pid = os.getpid()
        self._prefix = prefix
        self._base = os.path.join(directory, f"{prefix}{self._pid}-{os.urandom(4).hex()}-")
        self._ring: list[_Segment] = []
        self._usable = os.path.isdir(directory) and os.access(directory, os.W_OK)
        self.last_size = 0  # bytes of the last message encoded, shared-memory part included
        self._misses = 0  # large in-band messages in a row that had no big bytes
        self._had_big = False  # the last message went by segment for big bytes: so may this

    def encode(self, obj: object) -> bytes:
        """``obj`` as bytes for the pipe; ``last_size`` is then its whole size, buffers included."""
        self.last_size = 0
        data = self._encode(obj)
        self.last_size += len(data)
        return data

    def _encode(self, obj: object) -> bytes:
        oob: list[pickle.PickleBuffer] = []
        big: list[bytes] = []
        if self._had_big:  # the last message had big bytes: look for them at once
            data, big = self._by_id(obj, oob)  # with no persistent ids: the plain pickle
            inband: bytes | None = None if oob or big else data
        else:
            data = pickle.dumps(obj, protocol=5, buffer_callback=oob.append)
            inband = None if oob else data  # what to send if shared memory is not used
            if not oob and len(data) >= self.threshold and self._worth_again(data):
                again, big = self._by_id(obj, oob)
                if big:
                    self._misses = 0
                    data = again
                else:  # large for other reasons (many items, long str): keep in-band
                    self._misses += 1
        if not oob and not big:
            return data  # the common case: today's cost plus one bound method
        raws = [b.raw() for b in oob] + [memoryview(b) for b in big]
        sizes = [r.nbytes for r in raws]
        offsets: list[int] = []
        end = _HEAD
        for size in sizes:
            offsets.append(end)
            end = _round(end + size)
        seg = self._segment(end) if sum(sizes) >= self.threshold and self._usable else None
        if seg is None:
            return inband if inband is not None else pickle.dumps(obj, protocol=5)
        self.last_size = sum(sizes)
        # The generation first: a reader misusing an old message then fails its second check.
        seg.gen += 1
        struct.pack_into("<Q", seg.mm, _WRITTEN, seg.gen)
        for raw, off in zip(raws, offsets, strict=True):
            _copy_in(seg.mm, off, raw)
        name = os.path.basename(seg.path).encode()
        head = _FIXED.pack(_MAGIC, seg.gen, len(oob), len(big), len(name))
        return b"".join((head, name, struct.pack(f"<{2 * len(raws)}Q", *offsets, *sizes), data))

    def _worth_again(self, data: bytes) -> bool:
        """Whether a large in-band pickle is worth pickling again, looking for big ``bytes``
        (rarely, after ``_MISSES`` large ones in a row had none)."""
        if not self._usable:
            return False
        return self._misses < _MISSES or len(data) >= _RETRY

    def _by_id(self, obj: object, oob: list[pickle.PickleBuffer]) -> tuple[bytes, list[bytes]]:
        """``obj`` pickled with its large ``bytes`` by persistent id, and those bytes; notes
        whether they were worth a segment, so that the next message looks for them at once."""
        file = io.BytesIO()
        pickler = _BytesPickler(file, oob, self.threshold // 4)
        pickler.dump(obj)
        self._had_big = sum(len(b) for b in pickler.big) >= self.threshold
        return file.getvalue(), pickler.big

    def _segment(self, size: int) -> _Segment | None:
        """A consumed segment of at least ``size`` bytes, or a new one; None: in-band."""
        if os.getpid() != self._pid:
            msg = "an Encoder cannot be used in a forked child: create one per process"
            raise RuntimeError(msg)
        deadline, delay = time.monotonic() + self.wait, 5e-5
        try:
            while True:
                for seg in self._ring:
                    if seg.free():
                        if len(seg.mm) < size:  # grow in place: the decoder remaps by size
                            grown = _map(seg.path, size + size // 4, create=False)
                            seg.mm.close()
                            seg.mm = grown
                        return seg
                if len(self._ring) < self.slots:
                    with _creating:
                        if self._prefix in _SEALED:  # the run is being torn down
                            return None
                        seg = _Segment(f"{self._base}{len(self._ring)}", size + size // 4)
                    self._ring.append(seg)
                    return seg
                # All busy: the reader is behind. Wait a little, as a full pipe would make us,
                # since an in-band 4 MB message costs it far more; a reader gone or stuck for
                # longer gets the in-band message, whose send blocks or fails as today.
                if time.monotonic() >= deadline:
                    return None
                time.sleep(delay)
                delay = min(2 * delay, 1e-3)
        except OSError:  # no room in /dev/shm, no permission...: in-band from now on
            self._usable = False
        return None

    def close(self) -> None:
        """Unmaps and unlinks the segments; those not yet read are left for the decoder."""
        mine = os.getpid() == self._pid  # a forked copy must not unlink its parent's segments
        for seg in self._ring if mine else ():
            # Orphaned first, then look: the decoder marks consumed, then looks at orphaned.
            struct.pack_into("<Q", seg.mm, _ORPHANED, 1)
            if seg.free():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(seg.path)
        for seg in self._ring:
            seg.mm.close()
        self._ring.clear()


class Decoder:
    """Decodes what an Encoder produced; create it in the process that receives."""

    def __init__(self, directory: str = SHM_DIR) -> None:
        self._dir = directory
        self._maps: dict[str, mmap.mmap] = {}  # by segment name: a mapping costs page faults
        # Borrowed messages not yet settled: (segment name, generation, managed buffer).
        self._loans: list[tuple[str, int, object]] = []

    def decode(self, data: bytes, *, borrow: bool = False) -> object:
        if data[:1] != _MAGIC:
            return pickle.loads(data)
        _, gen, n_oob, n_big, name_len = _FIXED.unpack_from(data)
        at = _FIXED.size + name_len
        name = data[_FIXED.size : at].decode()
        n = n_oob + n_big
        table = struct.unpack_from(f"<{2 * n}Q", data, at)
        offsets, sizes = table[:n], table[n:]
        mm = self._mapping(name, max((o + s for o, s in zip(offsets, sizes, strict=True))))
        self._check(mm, gen, name)
        payload = data[at + 16 * n :]
        if borrow and not n_big:
            return self._borrow(mm, name, gen, payload, offsets, sizes)
        view = memoryview(mm)
        try:
            copies = [
                _copy_out(view, o, s) for o, s in zip(offsets[:n_oob], sizes[:n_oob], strict=True)
            ]
            big = [
                bytes(view[o : o + s]) for o, s in zip(offsets[n_oob:], sizes[n_oob:], strict=True)
            ]
        finally:
            view.release()  # or mm.close() would fail later
        self._check(mm, gen, name)  # overwritten while copying would be a bug: never return it
        self._consumed(mm, name, gen)
        if n_big:
            return _BytesUnpickler(payload, copies, big).load()
        return pickle.loads(payload, buffers=copies)

    def _borrow(
        self,
        mm: mmap.mmap,
        name: str,
        gen: int,
        payload: bytes,
        offsets: tuple[int, ...],
        sizes: tuple[int, ...],
    ) -> object:
        """Unpickle over views of the segment; the loan is settled when they are all gone."""
        view = memoryview(mm)  # a managed buffer of this message's own
        (managed,) = gc.get_referents(view)
        views = [view[o : o + s] for o, s in zip(offsets, sizes, strict=True)]
        del view
        self._loans.append((name, gen, managed))
        return pickle.loads(payload, buffers=views)

    def settle(self) -> None:
        """Mark consumed each borrowed segment whose views have all been dropped."""
        if not self._loans:
            return
        kept: list[tuple[str, int, object]] = []
        for loan in self._loans:
            # References: the loan tuple, and getrefcount's argument. Any more is a live view.
            if sys.getrefcount(loan[2]) > 2:
                kept.append(loan)
                continue
            mm = self._maps.get(loan[0])
            if mm is not None:
                self._consumed(mm, loan[0], loan[1])
        self._loans = kept

    def _consumed(self, mm: mmap.mmap, name: str, gen: int) -> None:
        struct.pack_into("<Q", mm, _CONSUMED, gen)
        if struct.unpack_from("<Q", mm, _ORPHANED)[0]:  # the encoder is gone: last reader unlinks
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self._dir, name))
            if not any(loan[0] == name for loan in self._loans if loan[1] != gen):
                with contextlib.suppress(BufferError):
                    self._maps.pop(name).close()

    def _mapping(self, name: str, size: int) -> mmap.mmap:
        mm = self._maps.get(name)
        if mm is None or len(mm) < size:  # new, or grown by the encoder since we mapped it
            if mm is not None:
                with contextlib.suppress(BufferError):  # still lent out: dropped when returned
                    mm.close()
            mm = self._maps[name] = _map(os.path.join(self._dir, name), 0, create=False)
        return mm

    @staticmethod
    def _check(mm: mmap.mmap, gen: int, name: str) -> None:
        if struct.unpack_from("<Q", mm, _WRITTEN)[0] != gen:
            msg = f"shared-memory segment {name} was overwritten before it was read"
            raise RuntimeError(msg)

    def close(self) -> None:
        """Unmaps every segment (their files belong to the encoders and ``cleanup``)."""
        self._loans.clear()
        for mm in self._maps.values():
            with contextlib.suppress(BufferError):  # views a stage still holds keep it mapped
                mm.close()
        self._maps.clear()


_creating = threading.Lock()  # held while an Encoder creates a segment file
_SEALED: Final[set[str]] = set()  # prefixes under which this process creates no more segments


def seal(prefix: str, timeout: float = 1.0) -> None:
    """From now on, no Encoder of this process creates a segment under ``prefix``; returns once
    none is in the middle of creating one, so that a ``cleanup(prefix)`` after it is final.
    Safe in a signal handler: the wait is bounded by ``timeout`` (the interrupted thread could
    be the one creating a segment)."""
    _SEALED.add(prefix)
    if _creating.acquire(timeout=timeout):
        _creating.release()


def unseal(prefix: str) -> None:
    """Forget ``prefix`` once nothing of its run is left that could create a segment."""
    _SEALED.discard(prefix)


def _after_fork_in_child() -> None:
    global _creating  # a lock another thread held at the fork would never be released
    _creating = threading.Lock()
    _SEALED.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def cleanup(prefix: str, directory: str = SHM_DIR) -> int:
    """Unlinks every file of ``directory`` whose name starts with ``prefix``; returns the count."""
    if not prefix or "/" in prefix:
        msg = f"refusing to clean up with prefix {prefix!r}"
        raise ValueError(msg)
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if entry.name.startswith(prefix):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed
