"""Which child processes of the test process count as a pipeline's workers."""

from __future__ import annotations

import os

import psutil

# multiprocessing's own helpers live as long as the test session, by design; so do Ray's
# daemons (gcs_server, raylet, agents, under site-packages/ray) and its pool of idle workers
# ("ray::IDLE"). Stage actors ("ray::OlympipeStage") are not infrastructure: one left
# alive after a test is a leak.
_INFRASTRUCTURE = (
    "multiprocessing.forkserver",
    "multiprocessing.resource_tracker",
    f"{os.sep}site-packages{os.sep}ray{os.sep}",
)


def is_infrastructure(proc: psutil.Process) -> bool:
    """A session-long helper process (see above), not a pipeline's worker."""
    try:
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    if cmdline.startswith("ray::"):
        return not cmdline.startswith("ray::OlympipeStage")
    return any(name in cmdline for name in _INFRASTRUCTURE)


def workers() -> list[psutil.Process]:
    """This process's descendants that are not infrastructure: pipelines' workers."""
    kids = psutil.Process(os.getpid()).children(recursive=True)
    return [p for p in kids if not is_infrastructure(p)]
