"""Mistakes with Pipeline.server and send_json_response."""

from __future__ import annotations

from typing import Any

from olympipe_typed import Connection, Pipeline, send_json_response


def parse(body: Any) -> int:
    return int(body["x"])


def takes_text(item: tuple[Connection, str]) -> str:
    return item[1]


def no_body() -> int:
    return 1


WIRING: dict[str, object] = {}


def mistakes() -> None:
    """Each line below is one deliberate mistake (type-checked, never called)."""
    WIRING["a method olympipe does not route"] = Pipeline.server([("FETCH", "/x", parse)])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
    server = Pipeline.server([("POST", "/x", parse)])
    WIRING["a stage for another payload"] = server.task(takes_text)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["a handler that takes no body"] = Pipeline.server([("POST", "/x", no_body)])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
    WIRING["a port as a str"] = Pipeline.server([("POST", "/x", parse)], port="80")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    WIRING["a socket for a connection"] = send_json_response(object(), {"y": 1})  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def payload_type() -> Pipeline[tuple[Connection, str]]:
    """The payload is what the handler returns."""
    return Pipeline.server([("POST", "/x", parse)])  # type: ignore[list-item]  # pyright: ignore[reportReturnType]
