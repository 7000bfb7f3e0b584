"""Pipeline.server and send_json_response (API.md §9): an HTTP/1.1 source, answered by a later
stage, in any process; real sockets on 127.0.0.1, stdlib clients."""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import pickle
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import cloudpickle
import psutil
import pytest

from olympipe_typed import Connection, Pipeline, StageError, _server, send_json_response

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from olympipe_typed._pipeline import Backend

pytestmark = pytest.mark.timeout(120)

T = TypeVar("T")
R = TypeVar("R")
Reply = tuple[int, Any]  # a response's status and JSON body
# Runs that end after a known number of requests also end after this long idle: a test whose
# run would not end fails then, well before pytest's timeout.
SAFETY = 30.0

# Ray is left out: its stage actors need not share the machine of the server's reply channel.
# $OLYMPIPE_TYPED_TEST_BACKENDS narrows them as for the conformance tests (the forkserver and
# spawn legs of tools/wheeltest.py test the process backend alone).
BACKENDS = [
    b
    for b in os.environ.get("OLYMPIPE_TYPED_TEST_BACKENDS", "inline,thread,process").split(",")
    if b != "ray"
]
StartMethod = Literal["fork", "forkserver", "spawn"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend that can answer from a later stage: process, thread and inline."""
    name: Backend = request.param
    return name


@pytest.fixture(autouse=True)
def nothing_left() -> Iterator[None]:
    """Fail a test that leaves a server thread, a TCP socket or a shared-memory file behind.

    (Descriptors are not counted: the first forkserver run opens one to the forkserver for
    the session.)"""
    sockets = _sockets()
    yield
    deadline = time.monotonic() + 5.0
    while (_servers() or _sockets() - sockets) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _servers() == []
    assert _sockets() - sockets == set()
    assert [n for n in os.listdir("/dev/shm") if n.startswith(f"olympipe-{os.getpid()}-")] == []


def _servers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("http-server:")]


def _sockets() -> set[tuple[int, str]]:
    """This process's TCP sockets: descriptor and state."""
    return {(c.fd, c.status) for c in psutil.Process().net_connections(kind="inet")}


# -- clients --


def _free_port() -> int:
    """A port nothing listens on (the kernel's choice, given back)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_listening(port: int) -> None:
    """Return once the server listens: it starts with the run, which nothing announces."""
    deadline = time.monotonic() + 20.0
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _request(port: int, method: str, path: str, body: object = None) -> Reply:
    """One request by http.client, JSON body; the response's status and JSON body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = None if body is None else json.dumps(body)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def _exchange(port: int, data: bytes) -> Reply:
    """Send raw bytes on a new connection, read the response to its end; status and JSON."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        return _response(sock)


def _response(sock: socket.socket) -> Reply:
    """Read a JSON response to its end (the server closes): its status and body."""
    chunks: list[bytes] = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert b"\r\nContent-Type: application/json\r\n" in head
    return int(head.split(b" ")[1]), json.loads(body) if body else None


def _continue(port: int, head: bytes) -> Reply:
    """Send a head that expects 100 Continue, wait for it, then send the body ``{"b": 2}``."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + b"\r\n\r\n")
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b'{"b": 2}')
        return _response(sock)


def _serve(pipeline: Pipeline[T], clients: Callable[[], R], **run: Any) -> tuple[list[T], R]:
    """Run ``pipeline`` here while ``clients`` runs in a thread; both results."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(clients)
        try:
            results = pipeline.run(**run)
        finally:
            outcome = future.result(timeout=60)
    return results, outcome


# -- stages --


def _x(body: Any) -> int:
    return int(body["x"])


def _echo(body: Any) -> Any:
    return body


def _double(item: tuple[Connection, int]) -> tuple[Connection, int]:
    conn, x = item
    return conn, 2 * x


def _answer(item: tuple[Connection, int]) -> int:
    conn, y = item
    if not send_json_response(conn, {"y": y}):
        msg = f"{conn!r}: the server did not take the answer"
        raise RuntimeError(msg)
    return y


def _answer_body(item: tuple[Connection, Any]) -> str:
    conn, body = item
    send_json_response(conn, {"body": body})
    return conn.path


def _doubler(port: int, timeout: float = 3.0, *, count: int | None = None) -> Pipeline[int]:
    """Doubles ``x``; ends after ``count`` requests when given (30 s idle: a safety net), else
    after ``timeout`` seconds idle."""
    idle = timeout if count is None else SAFETY
    server = Pipeline.server(
        [("POST", "/double", _x)], port=port, host="127.0.0.1", inactivity_timeout=idle
    )
    pipeline = server.task(_double).task(_answer)
    return pipeline if count is None else pipeline.limit(count)


# -- the tests --


def test_server_answers_each_client_with_its_own_result(backend: Backend) -> None:
    """1,000 JSON POSTs from 8 client threads: each gets twice its own x, from a later stage."""
    port = _free_port()

    def client(k: int) -> list[tuple[int, Reply]]:
        return [(x, _request(port, "POST", "/double", {"x": x})) for x in range(k, 1000, 8)]

    def clients() -> list[tuple[int, Reply]]:
        _wait_listening(port)
        with ThreadPoolExecutor(8) as pool:
            return [pair for part in pool.map(client, range(8)) for pair in part]

    results, replies = _serve(_doubler(port, count=1000), clients, backend=backend)
    assert sorted(x for x, _ in replies) == list(range(1000))
    assert [reply for _, reply in replies] == [(200, {"y": 2 * x}) for x, _ in replies]
    assert sorted(results) == [2 * x for x in range(1000)]


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_server_answers_from_workers_of_every_start_method(start_method: StartMethod) -> None:
    """Workers started by fork, forkserver or spawn answer through the reply channel."""
    port = _free_port()

    def client(x: int) -> Reply:
        return _request(port, "POST", "/double", {"x": x})

    def clients() -> list[Reply]:
        _wait_listening(port)
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(client, range(40)))

    results, replies = _serve(_doubler(port, count=40), clients, start_method=start_method)
    assert replies == [(200, {"y": 2 * x}) for x in range(40)]
    assert sorted(results) == [2 * x for x in range(40)]


def test_server_refuses_malformed_requests_and_keeps_serving(backend: Backend) -> None:
    """Garbage, a bad Content-Length, a body said to be JSON that is not, an unknown route: a
    400 or 404 each, and the next good request is answered."""
    port = _free_port()
    good = b'POST /double HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\n{"x": 4}'
    bad = [
        b"GARBAGE\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",  # a TLS hello
        b"POST /double HTTP/1.1\r\nContent-Length: abc\r\n\r\n{}",
        b"POST /double HTTP/1.1\r\nContent-Length: -2\r\n\r\n{}",
        b"POST /double HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST /double HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\nx=1",
        b"POST /double HTTP/1.1\r\nbad header\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /double HTTP/2.0\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /nowhere HTTP/1.1\r\n\r\n",
        b"GET /double HTTP/1.1\r\n\r\n",  # the path is routed for POST only
    ]

    def clients() -> list[Reply]:
        _wait_listening(port)
        replies = [_exchange(port, good)]
        for data in bad:
            replies += [_exchange(port, data), _exchange(port, good)]
        return replies

    results, replies = _serve(_doubler(port, count=11), clients, backend=backend)
    expected = [200]
    for status in [400] * 7 + [505, 404, 404]:
        expected += [status, 200]
    assert [status for status, _ in replies] == expected
    assert all(body == {"y": 8} for status, body in replies if status == 200)
    assert all("error" in body for status, body in replies if status != 200)
    assert results == [8] * 11


def test_server_passes_none_for_a_body_that_is_not_json(backend: Backend) -> None:
    """As olympipe does: an empty body, or one not JSON and not said to be, reaches the handler
    as None; the query string is not part of the path; chunked bodies and 100-continue work."""
    port = _free_port()
    routes: list[tuple[Literal["GET", "POST", "PUT"], str, Callable[[Any], Any]]] = [
        ("GET", "/echo", _echo),
        ("POST", "/echo", _echo),
        ("PUT", "/echo", _echo),
    ]
    chunked = (
        b"PUT /echo?x=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\n[1, \r\n3\r\n2]\n\r\n0\r\nTrailer: t\r\n\r\n"
    )

    def clients() -> list[Reply]:
        _wait_listening(port)
        return [
            _exchange(port, b"GET /echo?q=1 HTTP/1.1\r\n\r\n"),
            _exchange(port, b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nx=1"),
            _exchange(port, b'POST /echo HTTP/1.0\r\nContent-Length: 8\r\n\r\n{"a": 1}'),
            _exchange(port, chunked),
            _continue(port, b"POST /echo HTTP/1.1\r\nContent-Length: 8\r\nExpect: 100-continue"),
        ]

    server = Pipeline.server(routes, port=port, host="127.0.0.1", inactivity_timeout=SAFETY)
    results, replies = _serve(server.task(_answer_body).limit(5), clients, backend=backend)
    assert replies[:3] == [(200, {"body": None}), (200, {"body": None}), (200, {"body": {"a": 1}})]
    assert replies[3:] == [(200, {"body": [1, 2]}), (200, {"body": {"b": 2}})]
    assert results == ["/echo"] * 5


def test_server_answers_head_without_a_body(backend: Backend) -> None:
    """A HEAD request's response has the headers, Content-Length included, and no body."""
    port = _free_port()

    def clients() -> bytes:
        _wait_listening(port)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"HEAD /echo HTTP/1.1\r\n\r\n")
            chunks: list[bytes] = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    server = Pipeline.server(
        [("HEAD", "/echo", _echo)], port=port, host="127.0.0.1", inactivity_timeout=SAFETY
    )
    results, response = _serve(server.task(_answer_body).limit(1), clients, backend=backend)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(b"Content-Length: 14\r\nConnection: close\r\n\r\n")  # {"body": null}
    assert results == ["/echo"]


_IDLE = 3.0  # seconds without a request, measured


def test_server_uses_no_cpu_while_idle(backend: Backend) -> None:
    """Three seconds without a request cost the whole run under 1% of a core: the server
    blocks in select(), and the run's own threads and workers look rarely while nothing comes.
    What the run started is counted (every thread and worker process), with the caller's
    thread; what earlier tests left running in this process (a local Ray) is not. Time on a
    CPU is read from the scheduler, in nanoseconds: the clock-tick counts that ``times()``
    gives are 10 ms apart, and took a window of ten seconds."""
    port = _free_port()
    me = psutil.Process()
    earlier = ({t.id for t in me.threads()}, {c.pid for c in me.children(recursive=True)})

    def clients() -> dict[str, float]:
        _wait_listening(port)
        assert _request(port, "POST", "/x", 1) == (200, {"body": 1})
        time.sleep(1.0)  # the first request's aftermath: the feeder's and workers' ramp-up
        before, started = _cpu(earlier), time.monotonic()
        time.sleep(_IDLE)  # the measured idle time
        used = _spent(before, _cpu(earlier))
        assert time.monotonic() - started < _IDLE + 1.0
        assert _request(port, "POST", "/x", 2) == (200, {"body": 2})  # the last: limit(2)
        return used

    server = Pipeline.server([("POST", "/x", _same)], port=port, host="127.0.0.1")
    results, used = _serve(server.task(_answer_body).limit(2), clients, backend=backend)
    assert results == ["/x", "/x"]
    assert sum(used.values()) < 0.01 * _IDLE, f"CPU seconds in {_IDLE} s idle: {used}"


def _same(body: T) -> T:
    return body


def _on_cpu(task: str) -> float:
    """Seconds a thread (``/proc/<pid>/task/<tid>``) has run, from the scheduler's own count
    (nanoseconds); 0.0 once it has gone."""
    try:
        with open(f"{task}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _cpu(earlier: tuple[set[int], set[int]]) -> dict[str, float]:
    """CPU seconds used by this process's main thread and by the threads and child processes
    (every thread of them) that were not there ``earlier``, by name."""
    threads, children = earlier
    me = psutil.Process()
    main = threading.main_thread().native_id
    names = {t.native_id: t.name for t in threading.enumerate()}
    used = {
        f"thread {names.get(t.id, t.id)}": _on_cpu(f"/proc/{me.pid}/task/{t.id}")
        for t in me.threads()
        if t.id == main or t.id not in threads
    }
    for child in me.children(recursive=True):
        if child.pid in children:
            continue
        with contextlib.suppress(psutil.NoSuchProcess, FileNotFoundError):
            tasks = os.listdir(f"/proc/{child.pid}/task")
            used[f"process {child.pid} {child.name()}"] = sum(
                _on_cpu(f"/proc/{child.pid}/task/{tid}") for tid in tasks
            )
    return used


def _spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What each thread or process used between two ``_cpu`` readings (1 ms and more)."""
    spent = {name: round(t - before.get(name, 0.0), 4) for name, t in after.items()}
    return {name: t for name, t in spent.items() if t >= 0.001}


def test_server_inactivity_timeout_ends_the_run(backend: Backend) -> None:
    """``inactivity_timeout`` seconds without a request end the run with what it had, and the
    port is closed by then; with no request at all the run gives no items."""
    port = _free_port()

    def clients() -> Reply:
        _wait_listening(port)
        return _request(port, "POST", "/double", {"x": 21})

    started = time.monotonic()
    results, reply = _serve(_doubler(port, timeout=0.5), clients, backend=backend)
    assert (results, reply) == ([42], (200, {"y": 42}))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    assert _doubler(_free_port(), timeout=0.3).run(backend=backend) == []
    assert time.monotonic() - started < 30.0


def _fail_on_3(item: tuple[Connection, int]) -> int:
    if item[1] == 3:
        msg = "no answer for 3"
        raise ValueError(msg)
    return _answer(item)


def test_server_stage_error_ends_the_run_and_closes_the_port(backend: Backend) -> None:
    """A stage that raises ends the run with StageError; the request it held gets a 503, and
    nothing listens on the port any more (within a tick of the run's end)."""
    port = _free_port()
    server = Pipeline.server([("POST", "/x", _x)], port=port, host="127.0.0.1")

    def clients() -> list[Reply]:
        _wait_listening(port)
        # The second fails, once the run's reader waits in the source for a third.
        return [_request(port, "POST", "/x", {"x": x}) for x in (1, 3)]

    with ThreadPoolExecutor(1) as pool:
        replies = pool.submit(clients)
        with pytest.raises(StageError, match="no answer for 3"):
            server.task(_fail_on_3).run(backend=backend)
        first, (status, body) = replies.result(timeout=60)
    assert (first, status, body["status"]) == ((200, {"y": 1}), 503, "killed")
    assert _refused(port)


def _refused(port: int) -> bool:
    """Whether connecting to ``port`` is refused, within 2 s: the source notices the run's end
    at its next idle tick, 0.05 s after a request."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except ConnectionRefusedError as exc:
            return exc.errno == errno.ECONNREFUSED
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def _picky(body: Any) -> int:
    if body["x"] < 0:
        msg = "x must be >= 0"
        raise ValueError(msg)
    return int(body["x"])


def test_server_handler_error_answers_500_and_keeps_serving(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    """A handler that raises: its client gets a 500 with the message, stderr the traceback,
    and the next request is served."""
    port = _free_port()

    def clients() -> list[Reply]:
        _wait_listening(port)
        return [_request(port, "POST", "/x", {"x": x}) for x in (-1, 2)]

    server = Pipeline.server(
        [("POST", "/x", _picky)], port=port, host="127.0.0.1", inactivity_timeout=SAFETY
    )
    pipeline = server.task(_double).task(_answer).limit(1)  # the handler's failure is no item
    results, replies = _serve(pipeline, clients, backend=backend)
    assert replies == [(500, {"error": "x must be >= 0"}), (200, {"y": 4})]
    assert results == [4]
    err = capsys.readouterr().err
    assert "the handler of POST /x raised; request #1 answered 500" in err
    assert "ValueError: x must be >= 0" in err


def _answer_twice(item: tuple[Connection, int]) -> tuple[bool, bool, str, Connection]:
    conn, x = item
    first = send_json_response(conn, {"y": x})
    again = send_json_response(pickle.loads(pickle.dumps(conn)), {"y": -1})
    try:
        send_json_response(conn, {"y": -2})
    except RuntimeError as exc:
        return first, again, str(exc), conn
    return first, again, "", conn


def _answer_a_set(item: tuple[Connection, int]) -> str:
    try:
        send_json_response(item[0], {item[1]})
    except TypeError as exc:
        return str(exc)
    return ""


def test_send_json_response_answers_once(backend: Backend) -> None:
    """A second answer: refused by the server through another copy of the handle (False), an
    error through the same one; an answer that is not JSON raises and the client gets a 500;
    after the run, the server is gone (False)."""
    port = _free_port()
    routes: list[tuple[Literal["POST"], str, Callable[[Any], int]]] = [("POST", "/x", _x)]

    def clients() -> Reply:
        _wait_listening(port)
        return _request(port, "POST", "/x", {"x": 5})

    server = Pipeline.server(routes, port=port, host="127.0.0.1", inactivity_timeout=SAFETY)
    results, reply = _serve(server.task(_answer_twice).limit(1), clients, backend=backend)
    assert reply == (200, {"y": 5})
    [(first, again, raised, conn)] = results
    assert (first, again) == (True, False)
    assert raised == "<Connection #1 POST /x> was answered already: a request takes one answer"
    assert send_json_response(pickle.loads(pickle.dumps(conn)), {"late": True}) is False

    port = _free_port()
    server = Pipeline.server(routes, port=port, host="127.0.0.1", inactivity_timeout=SAFETY)
    [error], reply = _serve(server.task(_answer_a_set).limit(1), clients, backend=backend)
    assert error == "Object of type set is not JSON serializable"
    assert reply == (500, {"error": f"the answer could not be encoded as JSON: {error}"})


def test_server_survives_clients_that_leave(backend: Backend) -> None:
    """A client that resets its connection before the answer, and one that connects and sends
    nothing, do not stop the server; one that half-closes after its request gets its answer."""
    port = _free_port()
    request = b'POST /double HTTP/1.1\r\nContent-Length: 8\r\n\r\n{"x": 1}'

    def clients() -> list[Reply | bytes]:
        _wait_listening(port)
        reset = socket.create_connection(("127.0.0.1", port), timeout=30)
        reset.sendall(request)
        reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        reset.close()  # SO_LINGER 0: a reset, not a polite close
        with socket.create_connection(("127.0.0.1", port), timeout=30) as half:
            half.sendall(request)
            half.shutdown(socket.SHUT_WR)
            response = b"".join(iter(lambda: half.recv(65536), b""))
        return [response.partition(b"\r\n")[0], _request(port, "POST", "/double", {"x": 2})]

    def lenient(item: tuple[Connection, int]) -> int:
        send_json_response(item[0], {"y": item[1]})  # False for the client that left, maybe
        return item[1]

    server = Pipeline.server(
        [("POST", "/double", _x)], port=port, host="127.0.0.1", inactivity_timeout=1.0
    )
    results, replies = _serve(server.task(_double).task(lenient), clients, backend=backend)
    assert replies == [b"HTTP/1.1 200 OK", (200, {"y": 4})]
    assert sorted(results)[-2:] == [2, 4]


def test_server_closes_when_a_stream_is_left(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    """The caller answers from its loop over stream(); leaving the loop closes the server.
    ``debug=True`` prints where it listens and what it routes, as olympipe does."""
    port = _free_port()
    server = Pipeline.server([("POST", "/x", _x)], port=port, host="127.0.0.1", debug=True)

    def clients() -> Reply:
        _wait_listening(port)
        return _request(port, "POST", "/x", {"x": 7})

    with ThreadPoolExecutor(1) as pool:
        reply = pool.submit(clients)
        for conn, x in server.stream(backend=backend):
            assert send_json_response(conn, {"x": x}, status=201, reason="Created")
            break
        assert reply.result(timeout=60) == (201, {"x": 7})
    assert _refused(port)
    out = capsys.readouterr().out
    assert f"Listening on http://127.0.0.1:{port}\nHandling POST /x with _x\n" in out


def test_server_listens_on_loopback_by_default() -> None:
    """``host="localhost"`` (the default) listens on 127.0.0.1 alone."""
    port = _free_port()

    def clients() -> list[str]:
        _wait_listening(port)
        found = [
            c.laddr.ip
            for c in psutil.Process().net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        ]
        _request(port, "POST", "/echo", 1)
        return found

    server = Pipeline.server([("POST", "/echo", _echo)], port=port)
    results, found = _serve(server.task(_answer_body).limit(1), clients, backend="thread")
    assert (results, found) == (["/echo"], ["127.0.0.1"])


def test_server_checks_its_arguments_when_built() -> None:
    """Pipeline.server checks its arguments at once, naming each; building starts nothing."""
    bad: list[tuple[Any, Any, str]] = [
        ([("FETCH", "/x", _x)], {}, r"^route_handlers\[0\]: method must be one of DELETE, GET,"),
        ([("GET", "x", _x)], {}, r"^route_handlers\[0\]: path must be a str starting with '/'"),
        ([("GET", "/x", 3)], {}, r"^route_handlers\[0\]: handler must be callable \(got 3\)$"),
        ([("GET", "/x")], {}, r"^route_handlers\[0\] must be a \(method, path, handler\) tuple"),
        ("GET /x", {}, r"^route_handlers must be a sequence of \(method, path, handler\) tuples"),
        ([], {"port": 70000}, r"^port must be an int in 0\.\.65535 \(got 70000\)$"),
        ([], {"port": -1}, r"^port must be an int >= 0 \(got -1\)$"),
        ([], {"inactivity_timeout": 0}, r"^inactivity_timeout must be > 0 seconds \(got 0\)$"),
        ([], {"debug": "yes"}, r"^debug must be a bool \(got 'yes'\)$"),
    ]
    for routes, options, message in bad:
        with pytest.raises((TypeError, ValueError), match=message):
            Pipeline.server(routes, **options)
    port = _free_port()
    Pipeline.server([("GET", "/x", _x)], port=port).task(_double)
    assert _refused(port)


def test_connection_is_a_small_picklable_handle() -> None:
    """A Connection pickles (pickle and cloudpickle) to an equal handle, without a socket."""
    conn = Connection(7, "POST", "/x", ("127.0.0.1", 1), b"k" * 16)
    for copy in (pickle.loads(pickle.dumps(conn)), cloudpickle.loads(cloudpickle.dumps(conn))):
        assert copy == conn
        assert hash(copy) == hash(conn)
        assert repr(copy) == "<Connection #7 POST /x>"
    assert len(pickle.dumps(conn)) < 200
    assert conn != Connection(8, "POST", "/x", ("127.0.0.1", 1), b"k" * 16)


def test_send_json_response_checks_its_arguments() -> None:
    """A wrong handle, status or reason raises before anything is sent."""
    conn = Connection(1, "GET", "/", ("127.0.0.1", 1), b"k" * 16)
    with (
        socket.socket() as sock,
        pytest.raises(TypeError, match=r"^connection must be a Connection \(got socket\)$"),
    ):
        send_json_response(sock, {})  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match=r"^status must be an int in 200\.\.599 \(got 99\)$"):
        send_json_response(conn, {}, status=99)
    with pytest.raises(ValueError, match=r"^reason must be a str on one line"):
        send_json_response(conn, {}, reason="OK\r\nX-Injected: 1")


def test_server_stops_accepting_while_the_pipeline_is_behind(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past a few requests waiting for the source, the server accepts no more (new clients wait
    in the kernel's backlog); once the source takes them, it accepts again and every client is
    answered."""
    monkeypatch.setattr(_server, "_MAX_WAITING", 2)
    paused, resumed = threading.Event(), threading.Event()
    sync = _server._Server._sync_listeners

    def watched(self: _server._Server) -> None:
        sync(self)
        (paused if self.paused else resumed).set()

    monkeypatch.setattr(_server._Server, "_sync_listeners", watched)
    port = _free_port()
    release = threading.Event()

    def held(body: Any) -> int:
        release.wait(30)  # the first request holds the source: the others pile up
        return int(body["x"])

    def clients() -> list[Reply]:
        _wait_listening(port)
        socks: list[socket.socket] = []
        while len(socks) < 40 and not paused.is_set():
            socks.append(_send(port, len(socks)))
            paused.wait(0.5)  # set once the server has read enough requests
        socks += [_send(port, len(socks) + i) for i in range(3)]  # into the backlog
        release.set()
        replies: list[Reply] = []
        for sock in socks:
            with sock:
                replies.append(_response(sock))
        return replies

    server = Pipeline.server(
        [("POST", "/double", held)], port=port, host="127.0.0.1", inactivity_timeout=1.0
    )
    results, replies = _serve(server.task(_double).task(_answer), clients, backend=backend)
    assert paused.is_set()
    assert resumed.is_set()
    assert replies == [(200, {"y": 2 * x}) for x in range(len(replies))]
    assert sorted(results) == [2 * x for x in range(len(replies))]


def _send(port: int, x: int) -> socket.socket:
    """A connection that has sent the request ``{"x": x}`` (its response still to read)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    body = json.dumps({"x": x}).encode()
    sock.sendall(b"POST /double HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    return sock
