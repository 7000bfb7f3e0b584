"""Typed, multi-process data pipelines: one process per stage, chained by bounded queues.

>>> from olympipe_typed import source, stage
>>> @stage
... def times_2(x: int) -> int:
...     return x * 2
>>> (source(range(5)) >> times_2).run(backend="inline")
[0, 2, 4, 6, 8]
"""

from typing import TYPE_CHECKING

from ._errors import FailureBudgetExceeded as FailureBudgetExceeded
from ._errors import ItemTimeout as ItemTimeout
from ._errors import JournalMismatch as JournalMismatch
from ._errors import PipelineError as PipelineError
from ._errors import PipelineExecutionError as PipelineExecutionError
from ._errors import SourceError as SourceError
from ._errors import StageError as StageError
from ._errors import StageTypeError as StageTypeError
from ._errors import WiringError as WiringError
from ._errors import WorkerDied as WorkerDied
from ._failures import Failure as Failure
from ._failures import load_failures as load_failures
from ._pipeline import CacheEnvelope as CacheEnvelope
from ._pipeline import Pipeline as Pipeline
from ._pipeline import run_all as run_all
from ._pipeline import source as source
from ._report import RunReport as RunReport
from ._report import StageReport as StageReport
from ._stage import Batch as Batch
from ._stage import Stage as Stage
from ._stage import batch as batch
from ._stage import filter_stage as filter_stage
from ._stage import flat_stage as flat_stage
from ._stage import partial_stage as partial_stage
from ._stage import stage as stage

if TYPE_CHECKING:
    from ._server import Connection as Connection
    from ._server import send_json_response as send_json_response

    __version__: str
else:
    # Names a run does not need, imported when first asked for.
    _LAZY = {"Connection": "_server", "send_json_response": "_server"}

    def __getattr__(name: str) -> object:
        """``__version__``, read from the installed package's metadata when first asked for
        (importing ``importlib.metadata`` costs 15-30 ms, which a run's start-up does not pay),
        and the HTTP source's names (``_LAZY``)."""
        if name in _LAZY:
            from importlib import import_module

            value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
            value.__module__ = __name__
        elif name == "__version__":
            from importlib.metadata import version

            value = version("olympipe_typed")
        else:
            msg = f"module {__name__!r} has no attribute {name!r}"
            raise AttributeError(msg)
        globals()[name] = value
        return value


__all__ = [
    "Batch",
    "CacheEnvelope",
    "Connection",
    "Failure",
    "FailureBudgetExceeded",
    "ItemTimeout",
    "JournalMismatch",
    "Pipeline",
    "PipelineError",
    "PipelineExecutionError",
    "RunReport",
    "SourceError",
    "Stage",
    "StageError",
    "StageReport",
    "StageTypeError",
    "WiringError",
    "WorkerDied",
    "batch",
    "filter_stage",
    "flat_stage",
    "load_failures",
    "partial_stage",
    "run_all",
    "send_json_response",
    "source",
    "stage",
]


def _fixup_module_metadata() -> None:
    """Show public names as ``olympipe_typed.X`` in reprs, tracebacks and pickles (as trio does)."""
    for name in __all__:
        obj = globals().get(name)  # the lazy names set theirs when imported
        if getattr(obj, "__module__", "").startswith("olympipe_typed."):
            obj.__module__ = "olympipe_typed"


_fixup_module_metadata()
