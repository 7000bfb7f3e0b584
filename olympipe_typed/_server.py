r"""An HTTP/1.1 server as a pipeline source (``Pipeline.server``), answered by ``send_json_response``.

    clients --HTTP--> [server thread] --request--> server_source --(Connection, payload)--> stages
        ^               |     ^                  (in the feeder's thread,                   |
        +-- response ---+     |                   where the route's handler runs)           |
                              +---- reply channel (loopback TCP) <-- send_json_response ----+
                                                                     (any stage, any process)

One thread owns every socket: the listening one, the clients', and the reply channel that
answers come back on. It blocks in select() (no CPU while idle), reads each request whole,
answers a malformed one (400) or an unknown route (404) itself and hands the others to the
source. A request travels on as a ``Connection``: a small picklable handle (the request's
number, the reply channel's address and the server's key), never the socket, so a later
stage can answer it on any backend, under any start method.

The run reads the source in a thread of its own and, when it stops, no longer asks for items;
a source blocked waiting for a request would never learn it. So the source yields ``None``
while idle (soon after a request, then once a second), which ``Pipeline.server`` drops: the
reader comes back, sees the run stopped and lets the generator go, which closes the server.
Closing answers every request still open with 503 and closes every socket.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, TypeVar, cast, final, get_args

from ._http import (
    BadRequest,
    Chunked,
    Head,
    framing,
    head_end,
    json_body,
    parse_head,
    request_line,
    response,
)
from ._ops import check_int, check_seconds, label_of

if TYPE_CHECKING:
    import socket
    from collections import deque
    from queue import SimpleQueue

__all__ = [
    "Connection",
    "RouteHandler",
    "RouteMethod",
    "check_server",
    "is_request",
    "send_json_response",
    "server_source",
]

Out = TypeVar("Out")

RouteMethod: TypeAlias = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# A route: the method, the URL path (without the query string) and the handler, which gets the
# request's JSON body (None when the body is empty or not JSON) and returns the payload that
# goes down the pipeline with the request's Connection.
RouteHandler: TypeAlias = tuple[RouteMethod, str, Callable[[Any], Out]]

_METHODS: Final = frozenset(get_args(RouteMethod))

# Idle ticks: the first soon after a request (a stage failing on it ends the run, and the
# server closes within a tenth of a second or so), then twice as far apart each time, up to
# one a second: a run stopped while idle closes its server within a second.
_TICK_FIRST: Final = 0.05
_TICK_LAST: Final = 1.0

_MAX_HEAD: Final = 64 * 1024  # bytes of request line and headers, at most
_MAX_WAITING: Final = 256  # requests read but not taken by the source yet: accept no more
_READ: Final = 65536  # bytes per recv()
_REPLY_TIMEOUT: Final = 30.0  # seconds send_json_response waits for the server's receipt
# An answer on the reply channel: the server's key, the request's number, status, the reason's
# and the body's lengths; then the reason and the body.
_REPLY: Final = "!16sQHHI"


@final
class Connection:
    """The handle of a request waiting for its answer; ``send_json_response`` answers it.

    It travels with the payload to any later stage, in any process (it pickles); the client's
    socket stays with the server. ``method`` and ``path`` are the request's.
    """

    __slots__ = ("_answered", "address", "key", "method", "path", "request_id")

    def __init__(
        self, request_id: int, method: str, path: str, address: tuple[str, int], key: bytes
    ) -> None:
        self.request_id = request_id
        self.method = method
        self.path = path
        self.address = address  # the server's reply channel
        self.key = key  # the server's: answers carrying another key are refused
        self._answered = False  # by this copy; the server refuses a second answer from any

    def __reduce__(
        self,
    ) -> tuple[type[Connection], tuple[int, str, str, tuple[str, int], bytes]]:
        return (Connection, (self.request_id, self.method, self.path, self.address, self.key))

    def __repr__(self) -> str:
        return f"<Connection #{self.request_id} {self.method} {self.path}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Connection):
            return False
        return (self.key, self.request_id) == (other.key, other.request_id)

    def __hash__(self) -> int:
        return hash((self.key, self.request_id))


def send_json_response(
    connection: Connection, data: object, status: int = 200, reason: str = "OK"
) -> bool:
    """Answer the request behind ``connection`` with ``data`` as JSON, and close its client.

    The server writes an HTTP/1.1 response (Content-Type application/json, Content-Length,
    no body for HEAD) and closes the client's connection. Call it from any stage, in any
    process: the answer reaches the server's thread over its reply channel.

    Returns:
        True once the server has taken the answer. False when the request was no longer
        open: answered already (through another copy of the handle), its client gone, or the
        server stopped (it answered the request 503 then). A client that leaves after the
        server took the answer does not get it; with ``debug=True`` the server says so.

    Raises:
        RuntimeError: this handle answered already (one answer per request).
        TypeError, ValueError: ``data`` is not JSON-encodable (the client then gets a 500
            saying so), or ``status`` is not an int in 200..599, or ``reason`` holds a line break.
        OSError: the reply channel failed otherwise (a timeout: the server's process is stuck).
    """
    import json

    _check_answer(connection, status, reason)
    if connection._answered:
        msg = f"{connection!r} was answered already: a request takes one answer"
        raise RuntimeError(msg)
    connection._answered = True
    try:
        body = json.dumps(data).encode()
    except (TypeError, ValueError) as exc:
        error = {"error": f"the answer could not be encoded as JSON: {exc}"}
        _deliver(connection, 500, "Internal Server Error", json.dumps(error).encode())
        raise
    return _deliver(connection, status, reason, body)


def _check_answer(connection: object, status: object, reason: object) -> None:
    if not isinstance(connection, Connection):
        msg = f"connection must be a Connection (got {type(connection).__qualname__})"
        raise TypeError(msg)
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        msg = f"status must be an int in 200..599 (got {status!r})"
        raise ValueError(msg)
    if not isinstance(reason, str) or "\r" in reason or "\n" in reason:
        msg = f"reason must be a str on one line (got {reason!r})"
        raise ValueError(msg)


def _deliver(connection: Connection, status: int, reason: str, body: bytes) -> bool:
    """Send one answer on the reply channel; whether the server took it."""
    import socket
    import struct

    head = reason.encode("latin-1", errors="replace")
    frame = struct.pack(_REPLY, connection.key, connection.request_id, status, len(head), len(body))
    try:
        with socket.create_connection(connection.address, timeout=_REPLY_TIMEOUT) as channel:
            channel.sendall(frame + head + body)
            receipt = channel.recv(1)
    except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
        return False  # the server has stopped, and answered the request 503
    return receipt == b"A"


def is_request(item: object) -> bool:
    """Whether a server source's item is a request, not an idle tick (``None``)."""
    return item is not None


def check_server(
    route_handlers: object, port: object, host: object, debug: object, inactivity_timeout: object
) -> None:
    """Check ``Pipeline.server``'s arguments; each message names the parameter."""
    if isinstance(route_handlers, str | bytes) or not isinstance(route_handlers, Sequence):
        kind = type(route_handlers).__qualname__
        msg = f"route_handlers must be a sequence of (method, path, handler) tuples (got {kind})"
        raise TypeError(msg)
    for i, route in enumerate(cast("Sequence[object]", route_handlers)):
        if not isinstance(route, tuple | list) or len(cast("Sequence[object]", route)) != 3:
            msg = f"route_handlers[{i}] must be a (method, path, handler) tuple (got {route!r})"
            raise TypeError(msg)
        method, path, handler = cast("Sequence[object]", route)
        if method not in _METHODS:
            names = ", ".join(sorted(_METHODS))
            msg = f"route_handlers[{i}]: method must be one of {names} (got {method!r})"
            raise ValueError(msg)
        if not isinstance(path, str) or not path.startswith("/"):
            msg = f"route_handlers[{i}]: path must be a str starting with '/' (got {path!r})"
            raise ValueError(msg)
        if not callable(handler):
            msg = f"route_handlers[{i}]: handler must be callable (got {handler!r})"
            raise TypeError(msg)
    check_int("port", port, 0)
    if cast("int", port) > 65535:
        msg = f"port must be an int in 0..65535 (got {port!r})"
        raise ValueError(msg)
    if not isinstance(host, str):
        msg = f"host must be a str (got {type(host).__qualname__})"
        raise TypeError(msg)
    if not isinstance(debug, bool):
        msg = f"debug must be a bool (got {debug!r})"
        raise TypeError(msg)
    if inactivity_timeout is not None:
        check_seconds("inactivity_timeout", inactivity_timeout)


def server_source(
    route_handlers: Sequence[RouteHandler[Out]],
    host: str = "localhost",
    port: int = 8000,
    debug: bool = False,
    inactivity_timeout: float | None = None,
) -> Iterator[tuple[Connection, Out] | None]:
    """Serve HTTP on ``host:port``; yield ``(connection, handler(body))`` per routed request.

    Yields ``None`` while idle (see the module's docstring). Ends after ``inactivity_timeout``
    seconds (None: never) in which no request came and no answer went out. A handler that
    raises gets its client a 500 ``{"error": "..."}`` and its traceback on stderr; serving
    goes on. ``debug`` prints where the server listens and what it routes. Closing the
    generator stops the server: requests still open get a 503, every socket is closed.
    """
    check_server(route_handlers, port, host, debug, inactivity_timeout)
    routes = tuple(route_handlers)
    server = _Server(routes, host, port, debug)
    try:
        server.start()
        tick = _TICK_FIRST
        while True:
            wait = tick
            if inactivity_timeout is not None:
                idle = time.monotonic() - server.last_activity
                if idle >= inactivity_timeout:
                    if debug:
                        print(f"Closing server after {inactivity_timeout} s of inactivity")
                    return
                wait = min(wait, inactivity_timeout - idle)
            request = server.take(wait)
            if request is None:
                tick = min(2 * tick, _TICK_LAST)
                yield None
                continue
            tick = _TICK_FIRST
            handler = routes[request.route][2]
            if debug:
                print(f"Handling {request.method} {request.path} with {label_of(handler)}")
            try:
                payload = handler(request.body)
            except Exception as exc:
                server.handler_failed(request, exc)
                continue
            handle = Connection(
                request.id, request.method, request.path, server.address, server.key
            )
            yield handle, payload
    finally:
        server.close()


class _Request:
    """A routed request, handed from the server's thread to the source."""

    __slots__ = ("body", "id", "method", "path", "route")

    def __init__(self, request_id: int, route: int, method: str, path: str, body: object) -> None:
        self.id = request_id
        self.route = route
        self.method = method
        self.path = path
        self.body = body


class _Client:
    """One client's socket, its request as it arrives, then its answer as it leaves.

    ``state``: "reading" the request, "waiting" for its answer, "writing" a response,
    "draining" (the response sent and our side shut: reading until the client closes, so
    that closing does not reset a connection the client has not finished reading).
    """

    __slots__ = (
        "buffer",
        "chunked",
        "events",
        "head",
        "length",
        "out",
        "reading",
        "request_id",
        "sock",
        "state",
    )

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.out = bytearray()
        self.state = "reading"
        self.reading = True  # False once the client has shut its side
        self.events = 0  # what the selector watches for
        self.head: Head | None = None
        self.length = 0  # the body's Content-Length
        self.chunked: Chunked | None = None
        self.request_id = 0


class _Reply:
    """A connection on the reply channel, carrying one answer."""

    __slots__ = ("buffer", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()


class _Server:
    """The server's thread and every socket it owns (see the module's docstring)."""

    def __init__(
        self, routes: tuple[RouteHandler[Out], ...], host: str, port: int, debug: bool
    ) -> None:
        import queue
        import secrets
        import selectors
        import socket
        import threading
        from collections import deque

        self.routes: tuple[tuple[str, str], ...] = tuple((m, p) for m, p, _ in routes)
        self.debug = debug
        self.key = secrets.token_bytes(16)
        opened: list[socket.socket] = []
        try:
            self.listener = _listen(host, port)
            opened.append(self.listener)
            # Answers come back on loopback alone, whatever ``host`` is.
            self.replies = socket.create_server(("127.0.0.1", 0), backlog=socket.SOMAXCONN)
            opened.append(self.replies)
            self.wake_r, self.wake_w = socket.socketpair()
        except BaseException:
            for sock in opened:
                sock.close()
            raise
        for sock in (self.listener, self.replies, self.wake_r, self.wake_w):
            sock.setblocking(False)
        host_, port_ = self.replies.getsockname()[:2]
        self.address: tuple[str, int] = (str(host_), int(port_))
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self.selector.register(self.replies, selectors.EVENT_READ, None)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        self.handover: SimpleQueue[_Request | None] = queue.SimpleQueue()
        self.answers: deque[tuple[int, int, str, bytes]] = deque()  # posted by other threads
        self.open: dict[int, _Client] = {}  # requests handed over, waiting for their answer
        self.clients: set[_Client] = set()
        self.pending: set[_Reply] = set()
        self.watched = {self.listener: True, self.replies: True}  # by the selector
        self.starved = False  # out of descriptors: accept nothing until a socket closes
        self.count = 0
        self.paused = False  # not accepting: too many requests wait for the source
        self.stopping = False  # asked to stop (by the source's end)
        self.ended = False  # stopped: every socket closed
        self.error: BaseException | None = None
        self.last_activity = time.monotonic()
        bound = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, name=f"http-server:{bound}", daemon=True)

    # -- the source's side (its thread) --

    def start(self) -> None:
        if self.debug:
            host, port = self.listener.getsockname()[:2]
            print(f"Listening on http://{host}:{port}")
        self.thread.start()

    def take(self, timeout: float) -> _Request | None:
        """The next routed request, or None after ``timeout`` seconds without one."""
        import queue

        try:
            request = self.handover.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            request = None
        if request is None and self.ended:
            msg = "the HTTP server's thread has stopped"
            raise RuntimeError(msg) from self.error
        if self.paused:
            self._wake()  # the server accepts again once few requests wait
        return request

    def handler_failed(self, request: _Request, exc: Exception) -> None:
        """A handler raised: its client gets a 500, stderr the traceback."""
        import json
        import traceback

        print(
            f"olympipe_typed server: the handler of {request.method} {request.path} raised; "
            f"request #{request.id} answered 500",
            file=sys.stderr,
        )
        traceback.print_exception(exc, file=sys.stderr)
        body = json.dumps({"error": f"{exc}"}).encode()
        self.answers.append((request.id, 500, "Internal Server Error", body))
        self._wake()

    def close(self) -> None:
        """Stop the thread, which answers what is open (503) and closes every socket."""
        self.stopping = True
        self._wake()
        if self.thread.ident is not None:
            self.thread.join()
        else:
            self._shut()
        self.wake_w.close()

    def _wake(self) -> None:
        # BlockingIOError: the pipe is full of wake-ups, the thread has one to read already;
        # another OSError: closed, the server has stopped and answered what was open.
        with contextlib.suppress(OSError):
            self.wake_w.send(b"\0")

    # -- the server's thread --

    def _serve(self) -> None:
        import selectors

        try:
            while not self.stopping:
                for key, mask in self.selector.select():
                    sock = key.fileobj
                    data: object = key.data
                    # A socket closed by an earlier event of the batch is skipped (its
                    # descriptor may be a new socket's already).
                    if isinstance(data, _Client):
                        if mask & selectors.EVENT_WRITE and data in self.clients:
                            self._write(data)
                        if mask & selectors.EVENT_READ and data in self.clients:
                            self._read(data)
                    elif isinstance(data, _Reply):
                        if data in self.pending:
                            self._read_reply(data)
                    elif sock is self.listener:
                        self._accept()
                    elif sock is self.replies:
                        self._accept_reply()
                    else:
                        self._woken()
        except BaseException as exc:  # a fault of ours: the source raises it (take())
            self.error = exc
        finally:
            self._shut()

    def _woken(self) -> None:
        with contextlib.suppress(BlockingIOError):  # another wake-up read it
            self.wake_r.recv(4096)
        while self.answers:
            request_id, status, reason, body = self.answers.popleft()
            self._answer(request_id, status, reason, body)
        if self.paused and self.handover.qsize() < max(_MAX_WAITING // 2, 1):
            self.paused = False
            self._sync_listeners()

    def _accept(self) -> None:
        while not self.paused:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: wait until a client closes
                self._starve(exc)
                return
            sock.setblocking(False)
            client = _Client(sock)
            self.clients.add(client)
            self._watch(client)

    def _accept_reply(self) -> None:
        import selectors

        while True:
            try:
                sock, _ = self.replies.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._starve(exc)
                return
            sock.setblocking(False)
            reply = _Reply(sock)
            self.pending.add(reply)
            self.selector.register(sock, selectors.EVENT_READ, reply)

    def _starve(self, exc: OSError) -> None:
        """Accept nothing until a socket closes (the listeners stay readable: select() would
        spin)."""
        print(f"olympipe_typed server: cannot accept ({exc}); waiting", file=sys.stderr)
        self.starved = True
        self._sync_listeners()

    def _sync_listeners(self) -> None:
        """Watch each listener unless out of descriptors, and the HTTP one unless paused."""
        import selectors

        for sock, watched in self.watched.items():
            wanted = not self.starved and not (self.paused and sock is self.listener)
            if wanted and not watched:
                self.selector.register(sock, selectors.EVENT_READ, None)
            elif watched and not wanted:
                self.selector.unregister(sock)
            self.watched[sock] = wanted

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset: the client is gone
            self._gone(client)
            return
        if not data:
            self._eof(client)
        elif client.state == "reading":
            client.buffer += data
            try:
                self._parse(client)
            except BadRequest as bad:
                self._reject(client, bad)
        # Otherwise: what follows a request (a pipelined one, the rest of a refused body),
        # read and dropped; every response closes the connection.

    def _eof(self, client: _Client) -> None:
        """The client shut its side: a half-close while it waits for the answer is fine."""
        client.reading = False
        if client.state in ("reading", "draining"):
            self._close(client)  # it left before its request was whole, or after its answer
        else:
            self._watch(client)

    def _gone(self, client: _Client) -> None:
        if client.state == "waiting":
            del self.open[client.request_id]
            if self.debug:
                print(f"Client of request #{client.request_id} left before its answer")
        elif client.state == "writing" and self.debug:
            print(f"Client of request #{client.request_id} left before reading its answer")
        self._close(client)

    def _parse(self, client: _Client) -> None:
        """Read the head, then the body; route the request once it is whole."""
        buffer = client.buffer
        if client.head is None:
            while buffer.startswith((b"\r\n", b"\n")):  # empty lines before a request
                del buffer[: 2 if buffer.startswith(b"\r") else 1]
            end, sep = head_end(buffer)
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise BadRequest(431, "Request Header Fields Too Large", "headers too large")
                line_end = buffer.find(b"\n")
                if line_end >= 0:  # refuse garbage at once, not once the headers end
                    request_line(bytes(buffer[:line_end]).rstrip(b"\r"))
                return
            if end > _MAX_HEAD:
                raise BadRequest(431, "Request Header Fields Too Large", "headers too large")
            client.head = head = parse_head(bytes(buffer[:end]))
            del buffer[: end + sep]
            client.length, chunked = framing(head.headers)
            client.chunked = Chunked() if chunked else None
            # A client that expects 100 Continue sends its body after it (curl, for a second).
            expects = head.headers.get("expect", "").lower() == "100-continue"
            if expects and head.version == "1.1" and not buffer and (chunked or client.length):
                client.out += b"HTTP/1.1 100 Continue\r\n\r\n"
                self._watch(client)
        if client.chunked is not None:
            body = client.chunked.feed(buffer)
        elif len(buffer) >= client.length:
            body = bytes(buffer[: client.length])
        else:
            body = None
        if body is not None:
            self._route(client, client.head, body)

    def _route(self, client: _Client, head: Head, raw: bytes) -> None:
        wanted = (head.method, head.path)
        index = next((i for i, route in enumerate(self.routes) if route == wanted), None)
        if index is None:
            if self.debug:
                print(f"No route handler for {head.method} {head.path}")
            raise BadRequest(404, "Not Found", f"no route for {head.method} {head.path}")
        body = json_body(raw, head.headers.get("content-type", ""))
        client.buffer.clear()
        self.count += 1
        client.request_id = self.count
        client.state = "waiting"
        self.open[self.count] = client
        self.last_activity = time.monotonic()
        self.handover.put(_Request(self.count, index, head.method, head.path, body))
        if self.handover.qsize() >= _MAX_WAITING and not self.paused:
            self.paused = True  # the pipeline is behind: let new clients wait in the backlog
            self._sync_listeners()

    def _reject(self, client: _Client, bad: BadRequest) -> None:
        import json

        if self.debug and bad.status != 404:
            print(f"Refused a request: {bad.status} {bad.message}")
        body = json.dumps({"error": bad.message}).encode()
        method = client.head.method if client.head is not None else ""
        self._respond(client, bad.status, bad.reason, body, head_only=method == "HEAD")

    def _answer(self, request_id: int, status: int, reason: str, body: bytes) -> bool:
        """Send a request's answer; False if the request is not open (any more)."""
        client = self.open.pop(request_id, None)
        if client is None:
            return False
        self.last_activity = time.monotonic()
        assert client.head is not None
        self._respond(client, status, reason, body, head_only=client.head.method == "HEAD")
        return True

    def _respond(
        self, client: _Client, status: int, reason: str, body: bytes, *, head_only: bool
    ) -> None:
        client.out += response(status, reason, body, head_only=head_only)
        client.state = "writing"
        self._watch(client)

    def _write(self, client: _Client) -> None:
        import socket

        try:
            sent = client.sock.send(client.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._gone(client)
            return
        del client.out[:sent]
        if not client.out and client.state == "writing":
            client.state = "draining"
            try:
                # Shut our side even where a forked worker holds a copy of the socket.
                client.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close(client)
                return
            if not client.reading:
                self._close(client)
                return
        self._watch(client)

    def _watch(self, client: _Client) -> None:
        """Make the selector watch what ``client`` needs now."""
        import selectors

        events = (selectors.EVENT_READ if client.reading else 0) | (
            selectors.EVENT_WRITE if client.out else 0
        )
        if events == client.events:
            return
        if not events:
            self.selector.unregister(client.sock)
        elif not client.events:
            self.selector.register(client.sock, events, client)
        else:
            self.selector.modify(client.sock, events, client)
        client.events = events

    def _close(self, client: _Client) -> None:
        if client.events:
            self.selector.unregister(client.sock)
            client.events = 0
        _shutdown(client.sock)
        self.clients.discard(client)
        self._fed()

    def _fed(self) -> None:
        """A descriptor is free: accept again if out of them."""
        if self.starved:
            self.starved = False
            self._sync_listeners()

    def _read_reply(self, reply: _Reply) -> None:
        import secrets
        import struct

        try:
            data = reply.sock.recv(_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        reply.buffer += data
        size = struct.calcsize(_REPLY)
        key, request_id, status, reason_len, body_len = (
            struct.unpack_from(_REPLY, reply.buffer)
            if len(reply.buffer) >= size
            else (b"", 0, 0, 0, 0)
        )
        if key == b"" or len(reply.buffer) < size + reason_len + body_len:
            if not data:
                if reply.buffer:  # the sender died mid-answer: its request stays open
                    print("olympipe_typed server: an answer was cut short", file=sys.stderr)
                self._end_reply(reply)
            return
        reason = bytes(reply.buffer[size : size + reason_len]).decode("latin-1")
        body = bytes(reply.buffer[size + reason_len : size + reason_len + body_len])
        taken = secrets.compare_digest(key, self.key) and self._answer(
            request_id, status, reason, body
        )
        if not taken and self.debug:
            print(f"Answer to request #{request_id} dropped: it is not open")
        # One byte into an empty buffer; if the sender has gone, the answer stands.
        with contextlib.suppress(OSError):
            reply.sock.send(b"A" if taken else b"G")
        self._end_reply(reply)

    def _end_reply(self, reply: _Reply) -> None:
        self.selector.unregister(reply.sock)
        reply.sock.close()
        self.pending.discard(reply)
        self._fed()

    def _shut(self) -> None:
        """Answer every request still open (503), close every socket: the server's end."""
        import json

        body = json.dumps({"error": "the server stopped before answering", "status": "killed"})
        for client in list(self.clients):
            if client.state == "waiting" or (client.state == "reading" and client.buffer):
                client.out += response(503, "Service Unavailable", body.encode(), head_only=False)
            if client.out:  # once, without waiting: a client gone or slow gets the close
                with contextlib.suppress(OSError):
                    client.sock.send(client.out)
            _shutdown(client.sock)
        for reply in self.pending:
            reply.sock.close()
        for sock in (self.listener, self.replies, self.wake_r):
            _shutdown(sock)
        self.clients.clear()
        self.open.clear()
        self.pending.clear()
        self.selector.close()
        self.ended = True
        self.handover.put(None)  # a source waiting in take() hears of it at once


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``: IPv4 where the host has it, as olympipe binds."""
    import socket

    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = min(infos, key=lambda info: info[0] != socket.AF_INET)
    return socket.create_server(address[:2], family=family, backlog=socket.SOMAXCONN)


def _shutdown(sock: socket.socket) -> None:
    """Close ``sock``, shutting it first: a worker forked meanwhile may hold a copy, which
    would keep a listening socket listening and a client's connection open."""
    import socket

    with contextlib.suppress(OSError):  # not connected (any more): closing is all there is
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
