"""Download, decode on processes, write: one pipeline of I/O-bound and CPU-bound stages.

    python -m examples.downloads

A local HTTP server (started here, on 127.0.0.1) answers each record after 20 ms, compressed.
An async stage keeps 32 downloads in flight, two processes decompress and parse, and a threaded
stage writes one file per record. The files are compared with a plain loop's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from olympipe_typed import Stage, source, stage

RECORDS = 400
LATENCY = 0.02  # seconds the server takes per request


def record(n: int) -> bytes:
    """What the server holds for record ``n``: compressed JSON."""
    body = {"id": n, "values": [(n * k) % 97 for k in range(2000)]}
    return zlib.compress(json.dumps(body).encode())


class Records(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(LATENCY)
        data = record(int(self.path.rsplit("/", 1)[1]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


async def http_get(url: str) -> bytes:
    """A minimal HTTP/1.1 GET on asyncio streams (use aiohttp or httpx in real code)."""
    hostport, _, path = url.removeprefix("http://").partition("/")
    host, _, port = hostport.partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200") and not head.startswith(b"HTTP/1.1 200"):
        msg = f"{url}: {head.splitlines()[0].decode()}"
        raise OSError(msg)
    return body


@stage(concurrency=32, retries=2)
async def download(url: str) -> bytes:
    return await http_get(url)


@stage(workers=2)
def decode(data: bytes) -> tuple[int, str]:
    """CPU work: decompress, parse, summarise."""
    body = json.loads(zlib.decompress(data))
    digest = hashlib.sha256(json.dumps(body["values"]).encode()).hexdigest()
    return body["id"], f"{body['id']},{sum(body['values'])},{digest}\n"


def writer(folder: Path) -> Stage[tuple[int, str], str]:
    @stage(concurrency=4)
    def write(row: tuple[int, str]) -> str:
        path = folder / f"{row[0]:05d}.csv"
        path.write_text(row[1])
        return path.name

    return write


def main() -> None:
    server = Server(("127.0.0.1", 0), Records)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/records"
        urls = [f"{base}/{n}" for n in range(RECORDS)]
        with tempfile.TemporaryDirectory() as tmp:
            out, expected = Path(tmp, "pipeline"), Path(tmp, "loop")
            out.mkdir()
            expected.mkdir()
            start = time.perf_counter()
            names = (source(urls) >> download >> decode >> writer(out)).run()
            took = time.perf_counter() - start
            for n in range(RECORDS):  # the plain loop, for the comparison (no downloads)
                _, text = decode(record(n))
                Path(expected, f"{n:05d}.csv").write_text(text)
            assert names == [f"{n:05d}.csv" for n in range(RECORDS)]
            for name in names:
                assert Path(out, name).read_text() == Path(expected, name).read_text(), name
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    one_by_one = RECORDS * LATENCY
    print(
        f"{RECORDS} records downloaded, decoded and written in {took:.2f} s "
        f"(their downloads alone, one at a time: {one_by_one:.1f} s); files identical to the loop's"
    )


if __name__ == "__main__":
    main()
