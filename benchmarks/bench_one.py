"""One measurement of one system on one workload, in this fresh process.

``python -m benchmarks.bench_one --system X --workload Y [--quick] --json`` prints one JSON line:
the figure, whether the output was complete and in order, and this process's memory.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
import traceback
from typing import Any

from . import workloads
from .systems import RUNNERS, SYSTEMS, base_system


def _status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (VmHWM: this address space's peak RSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def measure(system: str, workload: str, *, quick: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"system": system, "workload": workload, "reason": None}
    if workload == "startup":
        from .startup import measure as measure_startup

        ms, reason = measure_startup(system, runs=3 if quick else 7, timeout=60.0)
        result.update(
            value=ms, unit="ms", reason=reason, status="ok" if reason is None else "wrong"
        )
        return result
    w = workloads.get(workload, quick=quick)
    runner, hinted = base_system(system)
    if not hinted:
        w = w.without_hints()
    for module in systems_imports(runner):
        importlib.import_module(module)
    items = workloads.source(w)
    checker = workloads.Checker(w)  # built before the clock starts (arrays: its base array)
    base_kb = _status_kb("VmRSS")
    start = time.perf_counter()
    if runner == "olympipe" and workload == "memory":
        from .systems import count_olympipe

        count, bad = count_olympipe(w, items)
        elapsed = time.perf_counter() - start
        reason = (f"{count} of {w.n} outputs" if count != w.n else None) or (
            f"out of place at output {bad}" if bad >= 0 else None
        )
    elif w.stream:
        for item in RUNNERS[runner](w, items):
            checker.feed(item)
        elapsed = time.perf_counter() - start
        reason = checker.verdict()
    else:
        outputs = list(RUNNERS[runner](w, items))
        elapsed = time.perf_counter() - start
        reason = workloads.check_list(w, outputs)
    peak_kb = _status_kb("VmHWM")
    result.update(seconds=elapsed, reason=reason, n=w.n, status="ok" if reason is None else "wrong")
    result.update(base_rss_mb=base_kb / 1000.0, peak_rss_mb=peak_kb / 1000.0)
    if workload == "identity":
        result.update(value=w.n / elapsed, unit="items/s")
    elif workload in ("cpu", "cpu_unbalanced", *workloads.SYNTHETIC):
        result.update(value=elapsed, unit="s")
    elif workload == "images":
        result.update(value=w.n / elapsed, unit="images/s")
    elif workload == "arrays":
        result.update(value=w.n * workloads.ARRAY_BYTES / 1e6 / elapsed, unit="MB/s")
    else:
        result.update(value=peak_kb / 1000.0, unit="MB")
    return result


def systems_imports(system: str) -> tuple[str, ...]:
    from .systems import IMPORTS

    return IMPORTS[system]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--system", required=True, choices=SYSTEMS)
    parser.add_argument("--workload", required=True, choices=workloads.WORKLOADS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON line (the default)")
    args = parser.parse_args(argv)
    try:
        result = measure(args.system, args.workload, quick=args.quick)
    except BaseException as exc:
        tb = traceback.format_exc()
        print(tb, file=sys.stderr)
        result = {
            "system": args.system,
            "workload": args.workload,
            "value": math.nan,
            "status": "failed",
            "reason": f"{type(exc).__name__}: {exc}".splitlines()[0][:160],
        }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
