"""The I/O rows of ``make bench`` (issue 19): stages that wait on a local HTTP server.

``python -m benchmarks.io_stages [--rounds N] [--requests N]``

A server on 127.0.0.1, in a process of its own on asyncio, answers each request after 50 ms.
Every round runs each system once, in turn (interleaved: the machine's drift falls on all of
them alike); the tables give medians over the rounds.

- Latency-bound: 2,000 requests, 64 in flight. The ideal is 2,000 / 64 x 50 ms = 1.56 s.
  Systems: one asyncio loop with a Semaphore(64), a ThreadPoolExecutor(64), and
  olympipe_typed with an ``async def`` stage or a plain function, ``concurrency=64``, on the
  process and thread backends. Targets: 1.3x the ideal (async), 1.5x (threads).
- Rate: ``rate=100`` over 500 items takes 5 s +- 5%, with 2 workers as with 1.
- Mixed: async download (300 requests, 10 ms each) -> CPU stage on 2 workers -> threaded
  write, against the inline result.

On 2 cores the server, the client and the caller share the machine: the server's own work
(about 0.2 ms of CPU a request) shows in every system alike; more cores would bring all of
them closer to the ideal.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from olympipe_typed import source, stage

if TYPE_CHECKING:
    from collections.abc import Callable

DELAY_MS = 50
IN_FLIGHT = 64
ASYNC_TARGET = 1.3
THREAD_TARGET = 1.5


# -- the server --


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1].decode()
        name, _, query = path.partition("?")
        delay = int(query.removeprefix("delay=") or 0)
        await asyncio.sleep(delay / 1000)
        body = name.lstrip("/").encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (len(body), body)
        )
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def _serve(ports: Any) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_answer, "127.0.0.1", 0, backlog=1024)
        ports.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


# -- clients --


def url_of(port: int, n: int, delay_ms: int = DELAY_MS) -> str:
    return f"http://127.0.0.1:{port}/{n}?delay={delay_ms}"


async def http_get(url: str) -> bytes:
    """A minimal HTTP/1.1 GET on asyncio streams (the standard library has no async client)."""
    hostport, _, path = url.removeprefix("http://").partition("/")
    host, _, port = hostport.partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\n\r\n".encode())
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return response.partition(b"\r\n\r\n")[2]


def http_get_blocking(url: str) -> bytes:
    """The same GET with http.client, for threads."""
    hostport, _, path = url.removeprefix("http://").partition("/")
    host, _, port = hostport.partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", f"/{path}")
        return conn.getresponse().read()
    finally:
        conn.close()


@stage(concurrency=IN_FLIGHT)
async def fetch(url: str) -> int:
    return int(await http_get(url))


@stage(concurrency=IN_FLIGHT)
def fetch_blocking(url: str) -> int:
    return int(http_get_blocking(url))


async def _raw_asyncio(urls: list[str]) -> list[int]:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(url: str) -> int:
        async with gate:
            return int(await http_get(url))

    return list(await asyncio.gather(*(one(u) for u in urls)))


def _raw_threads(urls: list[str]) -> list[int]:
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        return [int(b) for b in pool.map(http_get_blocking, urls)]


def latency_systems(urls: list[str]) -> dict[str, Callable[[], list[int]]]:
    return {
        "asyncio, Semaphore(64)": lambda: asyncio.run(_raw_asyncio(urls)),
        "ThreadPoolExecutor(64)": lambda: _raw_threads(urls),
        "olympipe_typed async, process": lambda: (source(urls) >> fetch).run(),
        "olympipe_typed async, thread": lambda: (source(urls) >> fetch).run(backend="thread"),
        "olympipe_typed threads, process": lambda: (source(urls) >> fetch_blocking).run(),
        "olympipe_typed threads, thread": lambda: (source(urls) >> fetch_blocking).run(
            backend="thread"
        ),
    }


# -- rate --


@stage(rate=100.0)
def paced(x: int) -> int:
    return x


@stage(rate=100.0, workers=2)
def paced_2(x: int) -> int:
    return x


# -- the mixed pipeline --


@stage(workers=2)
def digest(body: int) -> str:
    data = str(body).encode()
    for _ in range(2_000):  # about a millisecond of CPU
        data = hashlib.sha256(data).digest()
    return data.hex()[:16]


@stage(concurrency=8)
def write(text: str) -> int:
    time.sleep(0.002)  # a blocking write
    return len(text)


def _timed(run: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = run()
    return time.perf_counter() - started, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The I/O rows of make bench.")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args(argv)
    ctx = multiprocessing.get_context("spawn")
    ports: Any = ctx.Queue()
    server = ctx.Process(target=_serve, args=(ports,), daemon=True)
    server.start()
    failed: list[str] = []
    try:
        port = ports.get(timeout=30)
        n = args.requests
        urls = [url_of(port, i) for i in range(n)]
        ideal = n / IN_FLIGHT * DELAY_MS / 1000
        systems = latency_systems(urls)
        rate_systems = {
            "rate=100, 1 worker": lambda: (source(range(500)) >> paced).run(),
            "rate=100, 2 workers": lambda: (source(range(500)) >> paced_2).run(),
        }
        mixed = source([url_of(port, i, 10) for i in range(300)]) >> fetch >> digest >> write
        times: dict[str, list[float]] = {name: [] for name in [*systems, *rate_systems]}
        times["mixed pipeline, process"] = []
        expected = list(range(n))
        mixed_inline = mixed.run(backend="inline")
        for r in range(args.rounds):
            for name, run in systems.items():
                seconds, out = _timed(run)
                if out != expected:
                    failed.append(f"{name}: wrong output in round {r}")
                times[name].append(seconds)
            for name, run in rate_systems.items():
                seconds, out = _timed(run)
                if out != list(range(500)):
                    failed.append(f"{name}: wrong output in round {r}")
                times[name].append(seconds)
            seconds, out = _timed(mixed.run)
            if out != mixed_inline:
                failed.append(f"mixed pipeline: differs from the inline result in round {r}")
            times["mixed pipeline, process"].append(seconds)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        server.kill()
        server.join()
    raw = statistics.median(times["asyncio, Semaphore(64)"])
    print(
        f"\n{n:,} requests answered after {DELAY_MS} ms, {IN_FLIGHT} in flight; "
        f"ideal {ideal:.2f} s; medians of {args.rounds} interleaved rounds\n"
    )
    print(f"| system | seconds | x ideal | x asyncio | target |\n|{'---|' * 5}")
    for name in systems:
        med = statistics.median(times[name])
        target = ASYNC_TARGET if "async" in name else THREAD_TARGET
        mark = "" if "olympipe" not in name else ("met" if med / ideal <= target else "MISSED")
        if mark == "MISSED":
            failed.append(f"{name}: {med / ideal:.2f}x the ideal, target {target}x")
        print(f"| {name} | {med:.2f} | {med / ideal:.2f}x | {med / raw:.2f}x | {target}x {mark} |")
    print(f"\n| rate | seconds | target |\n|{'---|' * 3}")
    for name in rate_systems:
        med = statistics.median(times[name])
        ok = abs(med - 5.0) <= 0.25
        if not ok:
            failed.append(f"{name}: {med:.2f} s, not 5 s +- 5%")
        print(f"| {name} | {med:.2f} | 5 s +- 5% {'met' if ok else 'MISSED'} |")
    mixed_s = statistics.median(times["mixed pipeline, process"])
    print(
        f"\nmixed pipeline (async download -> 2 CPU workers -> threaded write): "
        f"{mixed_s:.2f} s, the inline result in every round"
        if not any("mixed" in f for f in failed)
        else ""
    )
    for line in failed:
        print(f"FAILED: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
