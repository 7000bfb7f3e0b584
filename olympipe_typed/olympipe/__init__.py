"""olympipe 2.2's public API on this engine: ``import olympipe_typed.olympipe as olympipe``.

A program or library written for olympipe runs unchanged once this module stands in for
``olympipe``::

    import sys
    import olympipe_typed.olympipe

    olympipe_typed.olympipe.install()   # sys.modules["olympipe"] and its submodules

``Pipeline`` is olympipe_typed's own, which has every method of olympipe's with its meaning,
except where docs/migrating.md says why not (siblings each receive every item, order is
kept, errors keep their type and derive from ``PipelineExecutionError``).
"""

from __future__ import annotations

import multiprocessing
import sys
from typing import TYPE_CHECKING

from .._errors import PipelineExecutionError as PipelineExecutionError
from .._pipeline import Pipeline as Pipeline
from . import decorators as decorators
from . import helpers as helpers
from . import monitorable_queue as monitorable_queue
from . import monitoring as monitoring
from . import pipes as pipes
from . import registry as registry
from . import shm as shm
from . import shuttable_queue as shuttable_queue
from . import types as types
from .decorators import class_task as class_task
from .decorators import filter as filter  # noqa: A004 - olympipe's name
from .decorators import source as source
from .decorators import source_from as source_from
from .decorators import splitter as splitter
from .decorators import task as task
from .helpers import dag as dag
from .helpers.dag import is_finished_with_errors as is_finished_with_errors
from .helpers.dag import make_dot_graph as make_dot_graph
from .helpers.dag import register_father_son as register_father_son
from .helpers.server import server_generator as server_generator
from .monitorable_queue import MonitorableQueue as MonitorableQueue
from .monitoring import enable_monitoring as enable_monitoring
from .pipes.batch import BatchPipe as BatchPipe
from .pipes.cache import CachedTaskPipe as CachedTaskPipe
from .pipes.cache import CacheEnvelope as CacheEnvelope
from .pipes.cache import UncachePipe as UncachePipe
from .pipes.checkpoint import CheckpointPipe as CheckpointPipe
from .pipes.debug import DebugPipe as DebugPipe
from .pipes.explode import ExplodePipe as ExplodePipe
from .pipes.filter import FilterPipe as FilterPipe
from .pipes.gather import GatherPipe as GatherPipe
from .pipes.generic import GenericPipe as GenericPipe
from .pipes.instance import ClassInstancePipe as ClassInstancePipe
from .pipes.limit import LimitPipe as LimitPipe
from .pipes.reduce import ReducePipe as ReducePipe
from .pipes.splitter import SplitterPipe as SplitterPipe
from .pipes.task import TaskPipe as TaskPipe
from .pipes.timebatch import TimeBatchPipe as TimeBatchPipe
from .pipes.timeout import TimeoutPipe as TimeoutPipe
from .shuttable_queue import ShuttableQueue as ShuttableQueue
from .types import ClassType as ClassType
from .types import InPacket as InPacket
from .types import OptionalInPacket as OptionalInPacket
from .types import OutPacket as OutPacket
from .types import RouteHandler as RouteHandler

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

__version__ = "2.2.0"  # the olympipe version whose API this mirrors

__all__ = [
    "BatchPipe",
    "CacheEnvelope",
    "CachedTaskPipe",
    "CheckpointPipe",
    "ClassInstancePipe",
    "ClassType",
    "DebugPipe",
    "ExplodePipe",
    "FilterPipe",
    "GatherPipe",
    "GenericPipe",
    "InPacket",
    "LimitPipe",
    "MonitorableQueue",
    "OptionalInPacket",
    "OutPacket",
    "Pipeline",
    "PipelineExecutionError",
    "ReducePipe",
    "RouteHandler",
    "ShuttableQueue",
    "SplitterPipe",
    "TaskPipe",
    "TimeBatchPipe",
    "TimeoutPipe",
    "UncachePipe",
    "class_task",
    "enable_monitoring",
    "filter",
    "get_mp_context",
    "install",
    "is_finished_with_errors",
    "make_dot_graph",
    "register_father_son",
    "server_generator",
    "source",
    "source_from",
    "splitter",
    "task",
]


def get_mp_context() -> BaseContext:
    """The multiprocessing context a run uses when ``start_method=`` is not given:
    multiprocessing's default one (olympipe chose its own, fork or spawn, at import)."""
    return multiprocessing.get_context()


def install() -> None:
    """Register this module as ``olympipe`` in ``sys.modules``, with its submodules
    (``olympipe.pipes.cache``, ``olympipe.helpers.server``, ...), so that ``import olympipe``
    and ``from olympipe.x import y`` anywhere in the program get this engine.

    Raises:
        ImportError: another ``olympipe`` was imported first (it would keep running there).
    """
    this = sys.modules[__name__]
    present = sys.modules.get("olympipe")
    if present is not None and present is not this:
        msg = f"another olympipe is already imported ({present!r}); call install() first"
        raise ImportError(msg)
    prefix = __name__ + "."
    for name, module in list(sys.modules.items()):
        if name == __name__ or name.startswith(prefix):
            sys.modules["olympipe" + name[len(__name__) :]] = module
