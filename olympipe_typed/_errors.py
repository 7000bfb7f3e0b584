"""The exception hierarchy of olympipe_typed, and nothing else.

Every exception here crosses process boundaries (a worker raises, the caller
re-raises), so each one pickles: ``self.args`` always matches the constructor.
"""

from __future__ import annotations

__all__ = [
    "FailureBudgetExceeded",
    "ItemTimeout",
    "JournalMismatch",
    "PipelineError",
    "PipelineExecutionError",
    "SourceError",
    "StageError",
    "StageTypeError",
    "WiringError",
    "WorkerDied",
]


class PipelineError(Exception):
    """Base class of every exception raised by olympipe_typed."""


class PipelineExecutionError(PipelineError, RuntimeError):
    """Base class of what a run raises when it fails while running: a stage raised
    (``StageError``, ``StageTypeError``), a worker died, the source raised, an item ran out
    of time, the failure budget was spent.

    It is olympipe's name for its one run error, a ``RuntimeError``: code written for
    olympipe that catches either keeps catching these. ``errors`` is olympipe's list of
    error texts (here the one error's).
    """

    @property
    def errors(self) -> list[str]:
        """The error's text, as a one-item list (olympipe lists one text per failed worker)."""
        return [str(self)]


class StageError(PipelineExecutionError):
    """Raised when a stage function raises; the original exception is ``__cause__``.

    When the stage ran in another process, ``traceback`` holds the worker's traceback
    text and the message shows it (the unpickled ``__cause__`` has no traceback of its own).
    """

    def __init__(self, stage: str, item_repr: str, message: str, traceback: str = "") -> None:
        super().__init__(stage, item_repr, message, traceback)
        self.stage = stage
        self.item_repr = item_repr
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        text = f"stage {self.stage!r} failed on item {self.item_repr}: {self.message}"
        if self.traceback:
            lines = self.traceback.rstrip("\n").splitlines()
            text += "\n\nIn the worker:\n" + "\n".join(f"    {line}" for line in lines)
        return text


class WorkerDied(PipelineExecutionError):
    """Raised when a worker process exits abnormally (killed, segfault, ``os._exit``)."""

    def __init__(self, stage: str, pid: int | None, exitcode: int | None, hint: str = "") -> None:
        super().__init__(stage, pid, exitcode, hint)
        self.stage = stage
        self.pid = pid
        self.exitcode = exitcode
        self.hint = hint

    def __str__(self) -> str:
        if self.exitcode is not None and self.exitcode < 0:
            import signal

            try:
                how = f"was killed by signal {signal.Signals(-self.exitcode).name}"
            except ValueError:
                how = f"was killed by signal {-self.exitcode}"
            hint = (
                " (SIGKILL: often the kernel's out-of-memory killer)" if self.exitcode == -9 else ""
            )
        elif self.exitcode is None:  # the platform did not say (a Ray actor, say)
            how, hint = "died", ""
        else:
            how, hint = f"exited with code {self.exitcode}", ""
        more = f": {self.hint}" if self.hint else ""
        return f"a worker of stage {self.stage!r} (pid {self.pid}) {how}{hint}{more}"


class SourceError(PipelineExecutionError):
    """Raised when the source iterable raises; the original exception is ``__cause__``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class StageTypeError(PipelineExecutionError, TypeError):
    """Raised with ``check_types=True`` when an item does not match a stage's annotation."""

    def __init__(self, stage: str, where: str, expected: str, actual: str, item_repr: str) -> None:
        super().__init__(stage, where, expected, actual, item_repr)
        self.stage = stage
        self.where = where
        self.expected = expected
        self.actual = actual
        self.item_repr = item_repr

    def __str__(self) -> str:
        return (
            f"stage {self.stage!r} expected {self.expected} at its {self.where} "
            f"but got {self.actual}: {self.item_repr}"
        )


class WiringError(PipelineError, TypeError):
    """Raised when ``a >> b`` or ``a | b`` joins stages whose item types cannot meet."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ItemTimeout(PipelineExecutionError):
    """An item ran longer than its stage's ``item_timeout``: its worker was stopped and
    replaced. It follows the stage's ``on_error`` like any exception the stage raises."""

    def __init__(self, stage: str, item_repr: str, seconds: float) -> None:
        super().__init__(stage, item_repr, seconds)
        self.stage = stage
        self.item_repr = item_repr
        self.seconds = seconds

    def __str__(self) -> str:
        return (
            f"stage {self.stage!r} ran longer than its item_timeout of {self.seconds:g} s "
            f"on item {self.item_repr}; its worker was stopped and replaced"
        )


class FailureBudgetExceeded(PipelineExecutionError):
    """More items failed under ``on_error="collect"`` than ``max_failures`` allows.

    ``counts`` maps each stage to its failures so far, ``entered`` to the items it took;
    ``first`` holds the first failures (``Failure`` objects)."""

    def __init__(
        self,
        budget: int | float,
        counts: dict[str, int],
        entered: dict[str, int],
        first: list[object],
    ) -> None:
        super().__init__(budget, counts, entered, first)
        self.budget = budget
        self.counts = counts
        self.entered = entered
        self.first = first

    def __str__(self) -> str:
        if isinstance(self.budget, float):
            allowed = f"more than {self.budget:.2%} of a stage's items failed"
        else:
            allowed = f"more than {self.budget} item(s) failed"
        per = ", ".join(
            f"{stage!r}: {n} of {self.entered.get(stage, '?')}" for stage, n in self.counts.items()
        )
        lines = [f"failure budget exceeded ({allowed}; max_failures={self.budget!r}): {per}"]
        lines += [f"  {failure}" for failure in self.first]
        return "\n".join(lines)


class JournalMismatch(PipelineError):
    """A journal was written by a different graph (other stage names or kinds, or another
    way of running it) than the one asked to resume from it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"journal {self.path!r} does not belong to this pipeline: {self.message}"
