"""One-way pipes between the caller and the workers, and a wait over them.

A ``PipeEnd`` is one end of an ``os.pipe``, carrying length-prefixed messages in the framing of
``multiprocessing.connection.Connection`` (a 4-byte big-endian length; ``-1`` then 8 bytes for a
message of 2 GiB or more), with the part of its interface this backend uses: ``send_bytes``,
``recv_bytes``, ``poll``, ``fileno``, ``close`` and ``closed``. It pickles for a spawned or
forkserver child the way a ``Connection`` does, by duplicating its descriptor into the child.

The backend does not import ``multiprocessing.connection``: that module brings ``tempfile``,
``shutil``, ``random``, ``bz2`` and ``lzma`` with it, about 7 ms of every run's start-up on the
project's 2-core machine (a fifth of a 3-stage run over one item). ``Process.join(timeout)``
imports it too, so the collector waits on a worker's sentinel with ``wait`` below and joins
only a worker that has exited.
"""

from __future__ import annotations

import os
import select
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Sequence

    Buffer = bytes | bytearray | memoryview

_SMALL: Final = 16384  # a message up to this size goes out with its header in one write
_HUGE: Final = 0x7FFFFFFF  # larger: the length travels as -1 and then 8 bytes


class PipeEnd:
    """One end of a one-way pipe: the read end takes ``recv_bytes``, the write end
    ``send_bytes``. Closed at garbage collection if not before."""

    __slots__ = ("_fd", "readable", "writable")

    def __init__(self, fd: int, *, readable: bool, writable: bool) -> None:
        self._fd: int | None = fd
        self.readable = readable
        self.writable = writable

    def __repr__(self) -> str:
        side = "read" if self.readable else "write"
        return f"<PipeEnd {side} fd={self._fd}>"

    def __del__(self) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        # Only while a spawned or forkserver child's arguments are pickled: the descriptor
        # is duplicated into the child, as multiprocessing does for a Connection.
        from multiprocessing.reduction import DupFd

        return (_rebuild, (DupFd(self.fileno()), self.readable, self.writable))

    @property
    def closed(self) -> bool:
        return self._fd is None

    def fileno(self) -> int:
        if self._fd is None:
            msg = "handle is closed"
            raise OSError(msg)
        return self._fd

    # Held by the class: an end collected while the interpreter shuts down may find this
    # module's globals cleared already.
    _os_close = staticmethod(os.close)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            self._os_close(fd)

    def send_bytes(self, data: Buffer) -> None:
        """Write one message. Raises ``BrokenPipeError`` once the read end is closed."""
        if not isinstance(data, bytes):
            data = memoryview(data).cast("B")
        n = len(data)
        # Above 2 GiB the length is -1, and then the length in 8 bytes.
        header = b"\xff\xff\xff\xff" + n.to_bytes(8, "big") if n > _HUGE else n.to_bytes(4, "big")
        if n > _SMALL:
            self._write(header)
            self._write(data)
        else:
            self._write(header + data)

    def _write(self, data: Buffer) -> None:
        fd = self.fileno()
        done = os.write(fd, data)
        if done < len(data):  # a signal can interrupt a large write part-way
            view = memoryview(data)[done:]
            while view:
                view = view[os.write(fd, view) :]

    def recv_bytes(self) -> bytes:
        """Read one message. Raises ``EOFError`` once the write end is closed (and every
        message read), ``OSError`` if it closed in the middle of one."""
        size = int.from_bytes(self._read(4), "big", signed=True)
        if size == -1:
            size = int.from_bytes(self._read(8), "big")
        return self._read(size)

    def _read(self, size: int) -> bytes:
        fd = self.fileno()
        chunk = os.read(fd, size)
        if len(chunk) == size:
            return chunk
        chunks = [chunk]
        left = size - len(chunk)
        while chunk and left:
            chunk = os.read(fd, left)
            chunks.append(chunk)
            left -= len(chunk)
        if left == size:
            raise EOFError
        if left:
            msg = "got end of file during message"
            raise OSError(msg)
        return b"".join(chunks)

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether a message (or the end of the pipe) is there to read, waiting up to
        ``timeout`` seconds (forever if None)."""
        return bool(wait([self], timeout))


def _rebuild(dup: Any, readable: bool, writable: bool) -> PipeEnd:
    return PipeEnd(dup.detach(), readable=readable, writable=writable)


def pipe() -> tuple[PipeEnd, PipeEnd]:
    """A new pipe: (read end, write end). Its descriptors are not inherited by an exec'ed
    program; a forked worker has them as the caller does."""
    r, w = os.pipe()
    return PipeEnd(r, readable=True, writable=False), PipeEnd(w, readable=False, writable=True)


class Waiter:
    """A wait for a loop that waits on nearly the same pipes each time: they stay registered
    in one ``select.poll`` from call to call (about 1 µs a call, against 10 µs for a selector
    built anew over eight pipes)."""

    def __init__(self) -> None:
        self.poller = select.poll()
        self.fds: dict[int, Any] = {}  # registered descriptor -> its object

    def wait(self, objs: Sequence[Any], timeout: float | None) -> list[Any]:
        """The objects of ``objs`` (pipe ends, or descriptors such as a process's sentinel)
        that are ready to read, at their end or broken; empty after ``timeout`` seconds (never
        if None). As ``multiprocessing.connection.wait``."""
        fds = {obj if isinstance(obj, int) else obj.fileno(): obj for obj in objs}
        old = self.fds
        if fds.keys() != old.keys():
            for fd in old.keys() - fds.keys():
                self.poller.unregister(fd)
            for fd in fds.keys() - old.keys():
                self.poller.register(fd, select.POLLIN)
        self.fds = fds
        ms = None if timeout is None else max(0.0, timeout) * 1000.0
        return [fds[fd] for fd, _ in self.poller.poll(ms)]


def wait(objs: Sequence[Any], timeout: float | None) -> list[Any]:
    """``Waiter.wait`` once."""
    return Waiter().wait(objs, timeout)


def join(process: Any, timeout: float) -> None:
    """``process.join(timeout)`` for a worker process, without importing
    ``multiprocessing.connection``: wait on its sentinel, and reap it once it has exited."""
    if process.is_alive() and not wait([process.sentinel], timeout):
        return
    process.join()
