"""HTTP/1.1 on the wire, for the server source (``_server.py``): request heads and bodies
parsed as they arrive, responses written; a request that breaks the rules raises
``BadRequest``, which the server answers itself."""

from __future__ import annotations

TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # a method, a header's name (RFC 9110)


class BadRequest(Exception):
    """A request the server answers itself: its status, reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(status, reason, message)
        self.status = status
        self.reason = reason
        self.message = message


class Head:
    """A request's line and headers (names in lower case)."""

    __slots__ = ("headers", "method", "path", "version")

    def __init__(self, method: str, path: str, version: str, headers: dict[str, str]) -> None:
        self.method = method
        self.path = path
        self.version = version
        self.headers = headers


def head_end(buffer: bytearray) -> tuple[int, int]:
    """Where the head ends and the length of the blank line after it; (-1, 0) if not yet."""
    crlf, lf = buffer.find(b"\r\n\r\n"), buffer.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    if lf >= 0:
        return lf, 2
    return -1, 0


def request_line(line: bytes) -> tuple[str, str, str]:
    """The method, path (no query string) and version of a request line, or BadRequest."""
    import re
    from urllib.parse import urlsplit

    match = re.fullmatch(rf"({TOKEN}) (\S+) HTTP/(\d)\.(\d)", line.decode("latin-1"))
    if match is None:
        raise BadRequest(400, "Bad Request", f"malformed request line {line[:80]!r}")
    method, target, major, minor = match.groups()
    if major != "1":
        message = f"HTTP/{major}.{minor} is not served: HTTP/1.1 is"
        raise BadRequest(505, "HTTP Version Not Supported", message)
    try:
        path = urlsplit(target).path
    except ValueError:
        raise BadRequest(400, "Bad Request", f"malformed target {target[:80]!r}") from None
    return method, path, f"{major}.{minor}"


def parse_head(head: bytes) -> Head:
    import re

    lines = [line.rstrip("\r") for line in head.decode("latin-1").split("\n")]
    method, path, version = request_line(lines[0].encode("latin-1"))
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or re.fullmatch(TOKEN, name) is None:  # folded lines included
            raise BadRequest(400, "Bad Request", f"malformed header line {line[:80]!r}")
        name, value = name.lower(), value.strip(" \t")
        if name in headers:
            if name == "content-length" and headers[name] != value:
                raise BadRequest(400, "Bad Request", "several Content-Length values")
            value = f"{headers[name]}, {value}" if name != "content-length" else value
        headers[name] = value
    return Head(method, path, version, headers)


def framing(headers: dict[str, str]) -> tuple[int, bool]:
    """The body's Content-Length, and whether it comes chunked instead."""
    encoding = headers.get("transfer-encoding")
    length = headers.get("content-length")
    if encoding is not None:
        if length is not None:
            raise BadRequest(400, "Bad Request", "both Content-Length and Transfer-Encoding")
        if encoding.lower() != "chunked":
            raise BadRequest(501, "Not Implemented", f"Transfer-Encoding {encoding!r}")
        return 0, True
    if length is None:
        return 0, False
    if not length.isascii() or not length.isdigit():
        raise BadRequest(400, "Bad Request", f"bad Content-Length {length[:40]!r}")
    return int(length), False


class Chunked:
    """A chunked body, decoded as it arrives."""

    __slots__ = ("body", "done", "size")

    def __init__(self) -> None:
        self.body = bytearray()
        self.size = -1  # the chunk being read: -1 before its size line, then its size
        self.done = False  # the last chunk read: trailers follow

    def feed(self, buffer: bytearray) -> bytes | None:
        """Take what ``buffer`` holds (consumed); the whole body once it has come."""
        while True:
            if self.done:  # trailers, up to an empty line
                end = buffer.find(b"\n")
                if end < 0:
                    return None
                line = bytes(buffer[:end]).rstrip(b"\r")
                del buffer[: end + 1]
                if not line:
                    return bytes(self.body)
            elif self.size < 0:
                end = buffer.find(b"\n")
                if end < 0:
                    if len(buffer) > 1024:
                        raise BadRequest(400, "Bad Request", "malformed chunk size line")
                    return None
                text = bytes(buffer[:end]).split(b";")[0].strip().decode("latin-1")
                del buffer[: end + 1]
                try:
                    self.size = int(text, 16)
                except ValueError:
                    raise BadRequest(400, "Bad Request", f"bad chunk size {text!r}") from None
                if self.size < 0 or not text.isalnum():
                    raise BadRequest(400, "Bad Request", f"bad chunk size {text!r}")
                self.done = self.size == 0
            else:
                if len(buffer) < self.size + 2:
                    return None
                if not buffer.startswith(b"\r\n", self.size):
                    raise BadRequest(400, "Bad Request", "chunk longer than its size")
                self.body += buffer[: self.size]
                del buffer[: self.size + 2]
                self.size = -1


def json_body(raw: bytes, content_type: str) -> object:
    """The body decoded as JSON; None when empty or not JSON (as olympipe does), but a body
    whose Content-Type says JSON must be JSON (400)."""
    import json

    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError included
        media = content_type.split(";")[0].strip().lower()
        if media == "application/json" or media.endswith("+json"):
            raise BadRequest(400, "Bad Request", f"the body is not JSON: {exc}") from None
        return None


def response(status: int, reason: str, body: bytes, *, head_only: bool) -> bytes:
    """An HTTP/1.1 response carrying ``body`` as JSON, closing the connection."""
    if status in (204, 304):  # no body, by definition
        return f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n\r\n".encode("latin-1")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1", errors="replace")
    return head if head_only else head + body
