"""I/O-bound stages (API.md §9): ``async def`` stages, ``concurrency=``, ``rate=``, mixed with
process stages, against a real HTTP server on 127.0.0.1 that these tests start (nothing leaves
the machine). Time bounds are about twice the issue's, which a loaded 2-core machine keeps."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.queues
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from olympipe_typed import StageError, filter_stage, flat_stage, source, stage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from olympipe_typed._pipeline import Backend

pytestmark = pytest.mark.timeout(120)

CONCURRENT: list[Backend] = ["thread", "process"]  # inline runs one item at a time


async def _answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: dict[str, int]
) -> None:
    """``GET /<n>?delay=<ms>&fail=<k>``: answers ``n`` after ``delay`` ms; the first ``k``
    requests for ``n`` get a 500 instead (a flaky service)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ", 2)[1].decode()
        path, _, query = target.partition("?")
        args = dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv)
        await asyncio.sleep(int(args.get("delay", "0")) / 1000.0)
        seen[path] = seen.get(path, 0) + 1
        status, body = (b"500 Flaky", b"flaky")
        if seen[path] > int(args.get("fail", "0")):
            status, body = b"200 OK", path.lstrip("/").encode()
        writer.write(
            b"HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, len(body), body)
        )
        await writer.drain()
    finally:
        writer.close()


def _serve(ports: multiprocessing.queues.Queue[int]) -> None:
    """The test server's process: an asyncio server, so that neither its speed (a threaded
    server tops out near 1,000 requests a second here) nor its threads (on the caller's GIL,
    beside the thread backend's) set the figures under test."""

    async def main() -> None:
        seen: dict[str, int] = {}
        server = await asyncio.start_server(
            lambda r, w: _answer(r, w, seen), "127.0.0.1", 0, backlog=512
        )
        ports.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


@pytest.fixture
def port() -> Iterator[int]:
    """A local HTTP server in a process of its own, for this test only."""
    context = multiprocessing.get_context("spawn")
    ports: multiprocessing.queues.Queue[int] = context.Queue()
    server = context.Process(target=_serve, args=(ports,), daemon=True)
    server.start()
    try:
        yield ports.get(timeout=60)
    finally:
        server.terminate()
        server.join()
        ports.close()
        ports.join_thread()


async def http_get(url: str) -> bytes:
    """A minimal HTTP/1.1 GET on asyncio streams (the standard library has no async client)."""
    rest = url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        msg = f"HTTP {status} for {url}"
        raise OSError(msg)
    return body


def url_of(port: int, n: int, delay_ms: int = 0, fail: int = 0) -> str:
    return f"http://127.0.0.1:{port}/{n}?delay={delay_ms}&fail={fail}"


@stage(concurrency=64)
async def fetch(url: str) -> int:
    return int(await http_get(url))


@stage(concurrency=64)
def fetch_blocking(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as response:
        return int(response.read())


def test_async_stage_keeps_order_with_64_in_flight(port: int, backend: Backend) -> None:
    """2,000 requests answered after 50 ms each, 64 at once: about 2,000 / 64 x 50 ms (the
    inline backend, one at a time, gets 40)."""
    n, delay = (40, 50) if backend == "inline" else (2000, 50)
    urls = [url_of(port, i, delay) for i in range(n)]
    start = time.perf_counter()
    out = (source(urls) >> fetch).run(backend=backend)
    elapsed = time.perf_counter() - start
    assert out == list(range(n))
    ideal = n / 64 * delay / 1000
    # Ray pays a call per message and its own scheduling: a looser bound, still far below the
    # 100 s of one request at a time.
    bound = {"inline": float("inf"), "ray": 4.0}.get(backend, 2 * 1.3) * ideal
    assert elapsed < bound, f"{elapsed:.2f} s against an ideal of {ideal:.2f} s"


@pytest.mark.parametrize("backend", CONCURRENT)
def test_threaded_plain_function_with_concurrency(port: int, backend: Backend) -> None:
    n, delay = 2000, 50  # as the async case: fixed start-up costs weigh less
    urls = [url_of(port, i, delay) for i in range(n)]
    start = time.perf_counter()
    out = (source(urls) >> fetch_blocking).run(backend=backend)
    elapsed = time.perf_counter() - start
    assert out == list(range(n))
    ideal = n / 64 * delay / 1000
    assert elapsed < 2 * 1.5 * ideal, f"{elapsed:.2f} s against an ideal of {ideal:.2f} s"


def test_async_stage_unordered_gives_every_item(port: int, backend: Backend) -> None:
    urls = [url_of(port, i, (i * 7) % 20) for i in range(300)]
    out = (source(urls) >> fetch.options(ordered=False)).run(backend=backend)
    assert sorted(out) == list(range(300))


@stage(retries=2, concurrency=8)
async def fetch_flaky(url: str) -> int:
    return int(await http_get(url))


def test_async_retries(port: int, backend: Backend) -> None:
    """Each URL fails twice before it answers: two retries get every item."""
    urls = [url_of(port, i, 5, fail=2) for i in range(40)]
    assert (source(urls) >> fetch_flaky).run(backend=backend) == list(range(40))


def test_async_error_names_stage_and_item(port: int, backend: Backend) -> None:
    urls = [url_of(port, i, 1, fail=1 if i == 13 else 0) for i in range(30)]
    with pytest.raises(StageError) as info:
        (source(urls) >> fetch).run(backend=backend)
    assert info.value.stage == "fetch"
    assert "/13?" in info.value.item_repr


def test_async_collect_and_skip(port: int, backend: Backend) -> None:
    urls = [url_of(port, i, 1, fail=5 if i % 10 == 3 else 0) for i in range(30)]
    pipeline = source(urls) >> fetch.options(on_error="collect")
    assert pipeline.run(backend=backend) == [i for i in range(30) if i % 10 != 3]
    report = pipeline.last_report
    assert report is not None
    assert sorted(f.item for f in report.failures) == sorted([urls[3], urls[13], urls[23]])
    assert {f.stage for f in report.failures} == {"fetch"}
    skipped = (source(urls) >> fetch.options(on_error="skip", name="f2")).run(backend=backend)
    assert skipped == [i for i in range(30) if i % 10 != 3]


@flat_stage
async def spell(word: str) -> AsyncIterator[str]:
    for ch in word:
        await asyncio.sleep(0)
        yield ch


@flat_stage
async def halves(word: str) -> list[str]:
    await asyncio.sleep(0.001)
    return [word[: len(word) // 2], word[len(word) // 2 :]]


@filter_stage
async def long_word(word: str) -> bool:
    await asyncio.sleep(0.001)
    return len(word) > 2


class Shout:
    def __init__(self, mark: str) -> None:
        self.mark = mark

    async def __call__(self, word: str) -> str:
        await asyncio.sleep(0.001)
        return word.upper() + self.mark


def test_async_stages_of_every_kind(backend: Backend) -> None:
    words = ["ab", "cde", "fghi", "j", "klm"] * 20
    pipeline = source(words) >> long_word >> stage(Shout)("!") >> halves >> spell
    expected: list[str] = []
    for w in words:
        if len(w) > 2:
            s = w.upper() + "!"
            expected.extend(s[: len(s) // 2] + s[len(s) // 2 :])
    assert pipeline.run(backend=backend) == expected


def test_async_stage_called_directly() -> None:
    assert stage(Shout)("?")("a") == "A?"
    assert spell("ab") == ["a", "b"]
    assert long_word("abc") is True


def test_async_stage_called_directly_inside_a_running_loop() -> None:
    async def main() -> str:
        return stage(Shout)(".")("x")

    assert asyncio.run(main()) == "X."


@stage(rate=250.0, workers=2)
def tick(x: int) -> float:
    return time.monotonic()


@pytest.mark.parametrize("backend", CONCURRENT)
@pytest.mark.parametrize("workers", [1, 2])
def test_rate_across_workers(backend: Backend, workers: int) -> None:
    """rate=250 over 500 items: 2 s (at most 250 starts in any second), with 2 workers as
    with 1. (The issue's figure, rate=100 over 500 items in 5 s, is the bench's I/O row.)"""
    start = time.perf_counter()
    times = (source(range(500)) >> tick.options(workers=workers)).run(backend=backend)
    elapsed = time.perf_counter() - start
    assert 1.9 < elapsed < 2.0 * 1.25, elapsed
    starts = sorted(times)
    # No 251 starts within a second, whichever worker made them (a little slack for clocks).
    assert min(b - a for a, b in zip(starts, starts[250:], strict=False)) > 0.95


@stage(rate=50.0)
async def tick_async(x: int) -> float:
    return time.monotonic()


def test_rate_on_an_async_stage() -> None:
    start = time.perf_counter()
    out = (source(range(100)) >> tick_async).run(backend="thread")
    assert 1.9 < time.perf_counter() - start < 1.98 * 1.5
    assert out == sorted(out)


@stage(workers=2)
def square(x: int) -> int:
    total = 0
    for _ in range(2000):
        total += x
    return x * x


class Write:
    """A threaded sink: one file per item (a blocking client, say)."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def __call__(self, x: int) -> int:
        (self.folder / f"{x}.txt").write_text(str(x))
        return x


@pytest.mark.parametrize("backend", CONCURRENT)
def test_mixed_pipeline_gives_the_inline_result(
    port: int, backend: Backend, tmp_path: Path
) -> None:
    """async download -> CPU stage on 2 processes -> threaded write: one run()."""
    urls = [url_of(port, i, 5) for i in range(200)]
    (tmp_path / "inline").mkdir()
    (tmp_path / backend).mkdir()
    write = stage(concurrency=8)(Write)
    expected = (source(urls) >> fetch >> square >> write(str(tmp_path / "inline"))).run(
        backend="inline"
    )
    assert expected == [i * i for i in range(200)]
    out = (source(urls) >> fetch >> square >> write(str(tmp_path / backend))).run(backend=backend)
    assert out == expected
    assert sorted(p.name for p in (tmp_path / backend).iterdir()) == sorted(
        p.name for p in (tmp_path / "inline").iterdir()
    )


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="concurrency must be an int >= 1"):
        stage(concurrency=0)
    with pytest.raises(ValueError, match="rate must be > 0"):
        stage(rate=0.0)
    with pytest.raises(ValueError, match="do not combine"):
        stage(item_timeout=1.0)(Shout("x").__call__)


@stage
def as_text(x: int) -> str:
    return str(x)


@stage
def length(s: str) -> int:
    return len(s)


@stage
def as_hex(x: int) -> str:
    return hex(x)


def test_io_stages_are_not_fused() -> None:
    """An I/O stage runs alone, as written: its neighbours are fused around it."""
    pipeline = source([10, 200, 3000]) >> as_text >> long_word >> length >> as_hex
    assert pipeline.run(backend="process") == ["0x3", "0x4"]
    report = pipeline.last_report
    assert report is not None
    assert report.plan is not None
    groups = [(g.stages, g.auto) for g in report.plan.groups]
    assert groups == [(("as_text",), True), (("long_word",), False), (("length", "as_hex"), True)]


def test_http_server_fixture_fails_on_demand(port: int) -> None:
    with pytest.raises(urllib.error.HTTPError, match="500"):
        urllib.request.urlopen(url_of(port, 1, 0, fail=1))


@stage
def plus_1000(x: int) -> int:
    return x + 1000


@stage
def same_int(x: int) -> int:
    return x


@stage(concurrency=64)
async def nap(x: int) -> int:
    await asyncio.sleep(0.1)
    return x


@flat_stage(concurrency=64)
async def twice_or_none(x: int) -> list[int]:
    await asyncio.sleep(0.1)
    return [x, x] if x % 3 else []


@pytest.mark.parametrize("backend", [*CONCURRENT, pytest.param("ray", marks=pytest.mark.ray)])
def test_io_stage_after_a_merge_keeps_its_items_in_flight(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    """After a fan-out's merge (a keyed graph, whose workers number each item's outputs), an
    I/O stage still keeps its items in flight together: 128 naps of 0.1 s, 64 at a time, take
    well under the 12.8 s of one at a time; outputs as inline, in order."""
    if backend == "ray":
        request.getfixturevalue("ray_local")
    pipeline = source(range(64)) >> (same_int | plus_1000) >> nap >> twice_or_none
    # As inline gives it (one at a time, 25 s): per input, the first branch's outputs first.
    expected = [z for x in range(64) for y in (x, x + 1000) if y % 3 for z in (y, y)]
    start = time.perf_counter()
    out = pipeline.run(backend=backend)
    elapsed = time.perf_counter() - start
    assert out == expected
    # One at a time takes 12.8 s; Ray's actors start in 1-2 s on a quiet host, and CI once
    # took 8 s in all on a loaded one.
    assert elapsed < 10.0, f"{elapsed:.2f} s: the items ran one at a time"


@stage(concurrency=16)
async def nap_or_fail(x: int) -> int:
    if x == 20:
        await asyncio.sleep(0.5)  # meanwhile the next messages start
        msg = "item 20 is bad"
        raise ValueError(msg)
    await asyncio.sleep(30.0 if x >= 32 else 0.01)
    return x


@pytest.mark.parametrize("backend", CONCURRENT)
def test_an_error_cancels_what_was_started_ahead(backend: Backend) -> None:
    """Workers start the next messages' items while a message's are in flight; when an item
    fails, the run raises its error at once, and the items started ahead (30 s naps) are
    cancelled rather than waited for."""
    start = time.perf_counter()
    with pytest.raises(StageError) as info:
        (source(range(400)) >> nap_or_fail).run(backend=backend)
    assert info.value.stage == "nap_or_fail"
    assert info.value.item_repr == "20"
    assert time.perf_counter() - start < 15.0


@stage(concurrency=8, on_error="collect")
async def half_fail(x: int) -> int:
    await asyncio.sleep(0.001)
    if x % 2:
        raise ValueError(x)
    return x


@pytest.mark.parametrize("backend", CONCURRENT)
def test_failures_collected_across_messages_started_ahead(backend: Backend) -> None:
    """Collected failures keep their order and none is lost when messages start ahead."""
    pipeline = source(range(1000)) >> half_fail
    assert pipeline.run(backend=backend) == list(range(0, 1000, 2))
    report = pipeline.last_report
    assert report is not None
    assert [f.item for f in report.failures] == list(range(1, 1000, 2))
