"""I/O-bound stages (API.md §9): ``async def`` stages of every kind wire as their plain forms."""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_type

from olympipe_typed import Stage, filter_stage, flat_stage, source, stage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@stage
async def fetch(url: str) -> bytes:
    return url.encode()


@stage(concurrency=64, rate=100.0, retries=2)
async def size(data: bytes) -> int:
    return len(data)


@flat_stage
async def lines(text: bytes) -> list[str]:
    return text.decode().splitlines()


@flat_stage(concurrency=8)
async def chunks(text: str) -> AsyncIterator[str]:
    for part in text.split(","):
        yield part


@filter_stage
async def nonempty(text: str) -> bool:
    return bool(text)


@stage(concurrency=32)
def blocking_upload(n: int) -> str:  # a plain function on 32 threads a worker
    return str(n)


class Client:
    def __init__(self, base: str) -> None:
        self.base = base

    async def __call__(self, path: str) -> bytes:
        return (self.base + path).encode()


class Pages:
    async def __call__(self, site: str) -> AsyncIterator[str]:
        yield site


get = stage(Client)("http://127.0.0.1")
pages = flat_stage(Pages)()

assert_type(fetch, Stage[str, bytes])
assert_type(size, Stage[bytes, int])
assert_type(lines, Stage[bytes, str, list[str]])
assert_type(chunks, Stage[str, str, list[str]])
assert_type(nonempty, Stage[str, str, bool])
assert_type(blocking_upload, Stage[int, str])
assert_type(get, Stage[str, bytes])
assert_type(pages, Stage[str, str, list[str]])

# A library's annotation holds for an async stage as for a plain one.
shared: Stage[str, bytes] = fetch

mixed = source(["a"]) >> fetch >> lines >> nonempty >> chunks >> pages
assert_type(mixed.run(), list[str])
counted = source(["a"]) >> get >> size >> blocking_upload
assert_type(counted.run(), list[str])

# Calling an async stage directly runs it to its end.
assert_type(fetch("x"), bytes)
assert_type(lines(b"a\nb"), list[str])
