"""The two examples of the article that made this approach known, in olympipe's style.

Unchanged but for the import line, and for the client data, which the article
read from a JSON file; here it is written to a temporary file first.
Run it with ``python -m examples.article``.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from olympipe_typed import Pipeline


def times_2(x: int) -> int:
    """The article's task."""
    return x * 2


def simple_task() -> list[int]:
    """The article's first example: one task over ten numbers."""
    datas = list(range(10))
    p = Pipeline(datas)
    p1 = p.task(times_2)
    res = p1.wait_for_result()
    print(res)  # [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert res == Pipeline(datas).task(times_2).wait_for_result()
    return res


CLIENTS = [
    "jane@example.com",
    "not-an-email",
    "bob@example.org",
    "555-123-4567",
    "ann@example.net",
]


def branching(path: Path) -> tuple[list[str], list[str], list[str]]:
    """The article's branching example: three outputs built from one pipeline."""
    data: list[str] = json.loads(path.read_text())
    phone_regex = re.compile(r"^[\+]?[(]?[0-9]{3}[)]?[-\s\.]?[0-9]{3}[-\s\.]?[0-9]{4,6}$")
    email_regex = re.compile(
        r"/^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*$/"
    )

    pipe = Pipeline(data)
    email_missing = pipe.filter(lambda x: not bool(email_regex.match(x)))
    email_valid = pipe.filter(lambda x: bool(email_regex.match(x)))
    phone_missing = email_valid.filter(lambda x: not bool(phone_regex.match(x)))
    all_info_ok = email_valid.filter(lambda x: bool(phone_regex.match(x)))

    res_invalid_email, res_invalid_phone, res_ok = Pipeline.wait_for_all_results(
        [
            email_missing,
            phone_missing,
            all_info_ok,
        ]
    )
    print(len(res_ok), "Valid client information")
    return res_invalid_email, res_invalid_phone, res_ok


def main() -> None:
    """Run both examples and check their results."""
    assert simple_task() == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "client_data.json"
        path.write_text(json.dumps(CLIENTS))
        invalid_email, invalid_phone, ok = branching(path)
    # The article's email pattern is written JavaScript-style, between slashes, so in Python it
    # matches nothing: every record lands in `email_missing`. What matters is that all of them
    # arrive there (siblings each receive every item; olympipe 2.2.0 lets them compete).
    assert invalid_email == CLIENTS, invalid_email
    assert invalid_phone == []
    assert ok == []


if __name__ == "__main__":
    main()
