"""Failures collected under ``on_error="collect"``: the record, its file, and the budget.

A worker turns each item that failed into a ``Failure`` (the item itself, the error's
type, message and traceback text); the caller's ``FailureLog`` keeps them for the run
report, appends each one to the ``failures=`` JSON Lines file as it arrives (flushed, so
a crash loses none already reported), and stops the run with ``FailureBudgetExceeded``
when ``max_failures`` is exceeded.

One line of the file per failure::

    {"stage": "decode", "error_type": "PIL.UnidentifiedImageError", "message": "...",
     "traceback": "Traceback (most recent call last): ...", "attempts": 1,
     "time": "2026-12-03T10:15:02.123456+00:00", "item_repr": "'cat.png'", "item": "cat.png"}

``item`` holds a str, int, float, bool or None as itself; any other item is pickled, in
``item_pickle`` (base64), which ``load_failures`` unpickles: load only files you wrote.
"""

# No ``from __future__ import annotations`` here: typing.NamedTuple would compile each field's
# string annotation at import (the process's first compile() costs about 1 ms of start-up).
import os
from typing import TYPE_CHECKING, Any, Final, Generic, NamedTuple, TypeVar, final

from ._errors import FailureBudgetExceeded
from ._hints import short_repr

if TYPE_CHECKING:
    from collections.abc import Iterable

In = TypeVar("In")

_MIN_SAMPLE: Final = 100  # a fraction budget is judged once a stage has taken this many items
_FIRST: Final = 5  # failures quoted in FailureBudgetExceeded's message
_PLAIN: Final = (str, int, float, bool, type(None))  # items the file holds as themselves


@final
class Failure(NamedTuple, Generic[In]):
    """One item that a stage failed on, under ``on_error="collect"`` (frozen, picklable).

    ``item`` is the stage's input item; ``error_type`` the exception's qualified name
    (``"ValueError"``, ``"PIL.UnidentifiedImageError"``); ``traceback`` the worker's
    traceback text; ``attempts`` how many times the stage was tried on it (``retries + 1``).
    """

    stage: str
    item: In
    error_type: str
    message: str
    traceback: str = ""
    attempts: int = 1

    def __repr__(self) -> str:
        return (
            f"Failure(stage={self.stage!r}, item={short_repr(self.item)}, "
            f"error_type={self.error_type!r}, message={self.message!r}, "
            f"attempts={self.attempts})"
        )


def qualified_name(kind: type) -> str:
    """``"ValueError"`` for a builtin, else ``"module.Class"``."""
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def failure_of(stage: str, item: object, exc: BaseException, attempts: int) -> Failure[Any]:
    """The record of ``item`` failing in ``stage`` with ``exc`` (in the worker)."""
    import traceback

    name = qualified_name(type(exc))
    text = "".join(traceback.format_exception(exc))
    remote = getattr(exc, "olympipe_remote", None)  # raised in a runner child: its words
    if isinstance(remote, tuple) and len(remote) == 2:  # pyright: ignore[reportUnknownArgumentType]
        name, text = str(remote[0]), str(remote[1])  # pyright: ignore[reportUnknownArgumentType]
    return Failure(stage, item, name, str(exc), text, attempts)


def check_budget(value: object) -> None:
    """Raise ValueError unless ``value`` is a valid ``max_failures``."""
    if value is None:
        return
    count = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if count or (isinstance(value, float) and 0.0 < value < 1.0):
        return
    msg = (
        "max_failures must be None, an int >= 0 (a count) or a float in (0, 1) "
        f"(a fraction of a stage's items) (got {value!r})"
    )
    raise ValueError(msg)


class FailureLog:
    """The caller's side: the run's failures, their file, and the budget."""

    def __init__(self, path: str | os.PathLike[str] | None, budget: int | float | None) -> None:
        check_budget(budget)
        self.failures: list[Failure[Any]] = []
        self.budget = budget
        self.counts: dict[str, int] = {}
        self.entered: dict[str, dict[int, int]] = {}  # stage -> worker -> items it took
        self._file = None if path is None else open(path, "a", encoding="utf-8")  # noqa: SIM115

    def add(
        self, stage: str, worker: int, failures: "Iterable[Failure[Any]]", entered: int
    ) -> None:
        """A worker's new failures, and how many items it had taken by then."""
        self.entered.setdefault(stage, {})[worker] = entered
        for failure in failures:
            self.failures.append(failure)
            self.counts[failure.stage] = self.counts.get(failure.stage, 0) + 1
            if self._file is not None:
                self._file.write(_line(failure))
                self._file.flush()
        self.check(final=False)

    def check(self, *, final: bool, entered: dict[str, int] | None = None) -> None:
        """Raise FailureBudgetExceeded if the budget is spent (at the end: ``entered``
        gives each stage's final count of items)."""
        budget = self.budget
        if budget is None or not self.counts:
            return
        taken = entered or {s: sum(w.values()) for s, w in self.entered.items()}
        if isinstance(budget, int):
            over = sum(self.counts.values()) > budget
        else:
            over = any(
                n > budget * taken.get(stage, 0) and (final or taken.get(stage, 0) >= _MIN_SAMPLE)
                for stage, n in self.counts.items()
            )
        if over:
            counts = dict(self.counts)
            raise FailureBudgetExceeded(budget, counts, taken, list(self.failures[:_FIRST]))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _line(failure: Failure[Any]) -> str:
    import datetime
    import json

    record: dict[str, object] = {
        "stage": failure.stage,
        "error_type": failure.error_type,
        "message": failure.message,
        "traceback": failure.traceback,
        "attempts": failure.attempts,
        "time": datetime.datetime.now(datetime.UTC).isoformat(),
        "item_repr": short_repr(failure.item),
    }
    item = failure.item
    if type(item) in _PLAIN:
        record["item"] = item
    else:
        import base64
        import pickle

        try:
            blob = pickle.dumps(item, protocol=5)
        except Exception as exc:  # recorded as such: load_failures says so
            record["item_error"] = f"the item could not be pickled: {exc!r}"
        else:
            record["item_pickle"] = base64.b64encode(blob).decode("ascii")
    return json.dumps(record) + "\n"


def load_failures(path: str | os.PathLike[str]) -> list[Failure[Any]]:
    """The failures a run wrote to ``failures=path``, with their items, in file order.

    A last line cut short by a crash is left out; any other unreadable line, or an item the
    file could not hold, raises ValueError naming the line. Items other than str, int,
    float, bool and None are unpickled: load only files you wrote.

    >>> import tempfile, os
    >>> from olympipe_typed import source, stage
    >>> @stage(on_error="collect")
    ... def inverse(x: int) -> float:
    ...     return 1 / x
    >>> path = os.path.join(tempfile.mkdtemp(), "failures.jsonl")
    >>> (source([1, 0, 2]) >> inverse).run(backend="inline", failures=path)
    [1.0, 0.5]
    >>> [(f.stage, f.item, f.error_type) for f in load_failures(path)]
    [('inverse', 0, 'ZeroDivisionError')]
    """
    import json

    with open(path, encoding="utf-8") as file:
        lines = file.read().split("\n")
    tail_cut = lines[-1] != ""  # no newline at the end: the writer died mid-line
    failures: list[Failure[Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            failures.append(_failure(record))
        except Exception as exc:  # a broken line, or an item that cannot be rebuilt
            if tail_cut and number == len(lines):
                break
            msg = f"{os.fspath(path)}, line {number}: not a failure record ({exc})"
            raise ValueError(msg) from exc
    return failures


def _failure(record: dict[str, Any]) -> Failure[Any]:
    if "item" in record:
        item = record["item"]
    elif "item_pickle" in record:
        import base64
        import pickle

        item = pickle.loads(base64.b64decode(record["item_pickle"]))
    else:
        msg = f"the item {record.get('item_repr')} was not stored: {record.get('item_error')}"
        raise ValueError(msg)
    return Failure(
        str(record["stage"]),
        item,
        str(record["error_type"]),
        str(record["message"]),
        str(record["traceback"]),
        int(record["attempts"]),
    )
