"""The start-up workload: a whole ``python -c "<3-stage pipeline over 1 item>"`` process,
minus ``python -c pass``, each system written as its users would write it."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = "[1]"

# The stage function is defined in the snippet itself, as a user's script would: importing a
# helper module would add its own import time to every system's figure.
_F = "def f(x: int) -> int:\n    return x\n"

SNIPPETS: dict[str, str] = {
    "loop": _F + "print([f(f(f(x))) for x in [1]])\n",
    "handwritten": _F
    + """
from benchmarks.handwritten import chain
print(list(chain([(f, 1)] * 3, [1])))
""",
    "pool": _F
    + """
import multiprocessing as mp
def h(x: int) -> int:
    return f(f(f(x)))
with mp.get_context("fork").Pool(2) as pool:
    print(pool.map(h, [1]))
""",
    "mpire": _F
    + """
from mpire import WorkerPool
def h(x: int) -> int:
    return f(f(f(x)))
with WorkerPool(n_jobs=2, start_method="fork") as pool:
    print(pool.map(h, [1]))
""",
    "spdl": _F
    + """
from concurrent.futures import ProcessPoolExecutor
from spdl.pipeline import PipelineBuilder
pools = [ProcessPoolExecutor(1) for _ in range(3)]
b = PipelineBuilder().add_source([1])
for pool in pools:
    b = b.pipe(f, executor=pool, output_order="input")
p = b.add_sink(3).build(num_threads=1)
with p.auto_stop():
    print(list(p))
for pool in pools:
    pool.shutdown()
""",
    "olympipe": _F
    + """
from olympipe import Pipeline
print(Pipeline([1]).task(f).task(f).task(f).wait_for_result())
""",
    "pypeln": _F
    + """
import pypeln as pl
print(list(pl.process.map(f, pl.process.map(f, pl.process.map(f, [1])))))
""",
    "mpipe": _F
    + """
from mpipe import OrderedStage, Pipeline
a, b, c = OrderedStage(f), OrderedStage(f), OrderedStage(f)
a.link(b)
b.link(c)
p = Pipeline(a)
p.put(1)
p.put(None)
print(list(p.results()))
""",
    "olympipe_typed": _F
    + """
import os
from olympipe_typed import source, stage
s = stage(f)
print((source([1]) >> s >> s >> s).run(backend=os.environ.get("OT_BACKEND", "process")))
""",
}


def _wall(code: str, timeout: float) -> tuple[float, str]:
    """Wall time of a whole ``python -c code`` process, and its output.

    Output goes to a file, not a pipe: a grandchild left alive must not hold the run open.
    The exit is awaited with a blocking ``wait()``: with a timeout, ``subprocess`` polls with
    sleeps growing to 50 ms, and every figure would land on its schedule (a 55 ms process is
    seen exiting at 63.5 ms, a 13 ms one at 15.5 ms). A timer kills a run that hangs.
    """
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, stdout=out, stderr=subprocess.DEVNULL
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            returncode = proc.wait()
        finally:
            timer.cancel()
        elapsed = time.perf_counter() - start
        out.seek(0)
        text = out.read().strip()
    if elapsed >= timeout:
        raise subprocess.TimeoutExpired(code, timeout)
    if returncode != 0:
        msg = f"exit code {returncode}"
        raise RuntimeError(msg)
    return elapsed, text


def measure(system: str, runs: int, timeout: float) -> tuple[float, str | None]:
    """(median ms above ``python -c pass``, None) or (nan, reason) if the output is wrong."""
    code = SNIPPETS[system]
    _wall(code, timeout)  # warm the page cache and .pyc files
    base: list[float] = []
    full: list[float] = []
    for _ in range(runs):
        base.append(_wall("pass", timeout)[0])
        elapsed, text = _wall(code, timeout)
        if text.splitlines()[-1:] != [EXPECTED]:
            return float("nan"), f"printed {text[-60:]!r}, expected {EXPECTED!r}"
        full.append(elapsed)
    return (statistics.median(full) - statistics.median(base)) * 1000.0, None
