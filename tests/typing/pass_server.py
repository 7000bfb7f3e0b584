"""Pipeline.server: the handler's payload type flows on to the stages after the source."""

from __future__ import annotations

from typing import Any, assert_type

from olympipe_typed import Connection, Pipeline, send_json_response


def parse(body: Any) -> int:
    return int(body["x"])


def label(body: dict[str, Any]) -> str:
    return str(body["name"])


def answer(item: tuple[Connection, int]) -> int:
    conn, x = item
    sent: bool = send_json_response(conn, {"y": 2 * x})
    return x if sent else -x


def answer_any(item: tuple[Connection, Any]) -> None:
    conn, data = item
    send_json_response(conn, data, status=201, reason="Created")


def check() -> None:
    """Each server pipeline's type (built, never run)."""
    server = Pipeline.server([("POST", "/double", parse)], port=8080)
    assert_type(server, Pipeline[tuple[Connection, int]])
    assert_type(server.task(answer), Pipeline[int])
    doubled: Pipeline[int] = server.task(answer, count=4)
    labels: Pipeline[tuple[Connection, str]] = Pipeline.server(
        [("GET", "/name", label), ("PUT", "/name", label)], host="0.0.0.0", debug=True
    )
    # olympipe's README: the handler passes the body on.
    readme: Pipeline[None] = Pipeline.server(
        [("POST", "/compute", lambda body: body)], port=8000, inactivity_timeout=60.0
    ).task(answer_any)
    del doubled, labels, readme
