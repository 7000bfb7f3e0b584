"""Run every system on every workload, each in a fresh subprocess; print and save the tables.

``python -m benchmarks.run [--quick] [--repeat N] [--systems a,b] [--workloads x,y]``
(``make bench``). Results go to ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from . import fns, workloads
from .systems import HINTS, JOURNAL, RAY, SPLIT, SYSTEMS, cores, describe, runs_on

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE = "handwritten"
OURS = "olympipe_typed"
# The reference of the image and skewed workloads: one Pool over the composed stages.
POOL = "pool"

# The Ray column's child: a local Ray started before bench_one's clock, as a running cluster
# would be; olympipe_typed joins it. Start-up is measured with olympipe_typed's own snippet,
# OT_BACKEND=ray, which starts Ray itself.
RAY_CHILD = (
    "import sys, ray; ray.init(include_dashboard=False, log_to_driver=False); "
    "from benchmarks.bench_one import main; sys.exit(main(sys.argv[1:]))"
)

UNITS = {
    "identity": "items/s",
    "cpu": "s",
    "cpu_unbalanced": "s",
    "arrays": "MB/s",
    "startup": "ms",
    "memory": "peak MB",
    "images": "images/s",
    "heavy_tail": "s",
    "periodic_skew": "s",
}
HIGHER_IS_BETTER = {"identity", "arrays", "images"}
# The workloads of the README's speed table against the hand-written chain.
README_ROWS = ("identity", "cpu", "cpu_unbalanced", "arrays", "startup", "memory")
# Runs per cell by default. The CPU-bound cells and start-up move most with the load of a shared
# machine (the single loop, which sets the ideal, varies by 10% from run to run): more runs
# steady their medians. The others are costly (pypeln's identity run takes 100 s) and steadier.
# The image job moves with the host's CPU speed (one system's runs drift from 31 to 44 images/s
# within minutes): five runs, and its ratios to the pool are also taken round by round.
REPEATS = {
    "cpu": 7,
    "cpu_unbalanced": 7,
    "startup": 5,
    "images": 5,
    "heavy_tail": 7,
    "periodic_skew": 7,
}
DEFAULT_REPEAT = 3


@dataclass
class Cell:
    """Every run of one system on one workload."""

    runs: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])

    @property
    def problem(self) -> dict[str, Any] | None:
        """The first run that failed or gave wrong output (its timing does not count)."""
        return next((r for r in self.runs if r.get("status") != "ok"), None)

    @property
    def median(self) -> float:
        if self.problem is not None or not self.runs:
            return math.nan
        return statistics.median(float(r["value"]) for r in self.runs)

    def median_of(self, key: str) -> float:
        values = [float(r[key]) for r in self.runs if key in r]
        return statistics.median(values) if values else math.nan


_TICK = os.sysconf("SC_CLK_TCK")
#: Share of the machine (wall time x cores) that others may take from a measurement before it
#: is taken again: steal (the hypervisor ran other guests on our vCPUs) plus CPU time used by
#: processes outside the measured process tree.
DISTURBED = 0.05
#: ... and at least this many seconds of it: /proc/stat counts in ticks of 10 ms, sampled, so a
#: short run's share is only known to a few ticks.
DISTURBED_S = 0.05
#: Measurements taken again at most, per run of a cell, when the host disturbed them.
RETRIES = 2


def _cpu_ticks() -> tuple[int, int]:
    """(busy, steal) clock ticks of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq, steal


def _tree_cpu() -> float:
    """CPU seconds of this process and of the children it has waited for."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class HostMeter:
    """What the rest of the host took from the machine while one measurement ran.

    ``steal_s``: time the hypervisor gave our vCPUs to other guests; ``foreign_s``: CPU time
    the machine spent outside the measured process tree (other processes, kernel threads).
    A system that leaves processes it does not wait for (Ray's daemons) counts them as foreign.
    """

    def __init__(self) -> None:
        self._busy, self._steal = _cpu_ticks()
        self._tree = _tree_cpu()
        self._wall = time.perf_counter()

    def read(self, cores: int) -> dict[str, float]:
        busy, steal = _cpu_ticks()
        wall = time.perf_counter() - self._wall
        steal_s = (steal - self._steal) / _TICK
        foreign_s = max(0.0, (busy - self._busy) / _TICK - (_tree_cpu() - self._tree))
        share = (steal_s + foreign_s) / max(wall * cores, 1e-9)
        return {"steal_s": steal_s, "foreign_s": foreign_s, "share": share}


def run_child(
    system: str, workload: str, *, quick: bool, timeout: float, env: dict[str, str]
) -> dict[str, Any]:
    """One measurement in a fresh process; taken again (``RETRIES`` times at most) when the
    host took more than ``DISTURBED`` of the machine meanwhile (and ``DISTURBED_S`` at least).
    Ray's runs are never taken again: its own daemons count as the host's."""
    result: dict[str, Any] = {}
    for attempt in range(1 + (0 if system == RAY else RETRIES)):
        meter = HostMeter()
        result = _run_child_once(system, workload, quick=quick, timeout=timeout, env=env)
        host = result["host"] = meter.read(cores())
        result["attempts"] = attempt + 1
        taken = host["steal_s"] + host["foreign_s"]
        if result.get("status") != "ok" or host["share"] <= DISTURBED or taken < DISTURBED_S:
            break
    return result


def _run_child_once(
    system: str, workload: str, *, quick: bool, timeout: float, env: dict[str, str]
) -> dict[str, Any]:
    """One measurement in a fresh process (its own session, killed whole on timeout)."""
    cmd, env = child_command(system, workload, env)
    if quick:
        cmd.append("--quick")
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.communicate()
        return {"status": "timeout", "reason": f"killed after {timeout:.0f} s", "value": math.nan}
    _kill_group(proc.pid)  # a library's leftovers (olympipe's Manager...) must not outlive the run
    lines = out.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return {"status": "failed", "reason": tail[:160], "value": math.nan}
    return result


def child_command(
    system: str, workload: str, env: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The command (and environment) of one measurement's child process."""
    if system != RAY:
        return [sys.executable, "-m", "benchmarks.bench_one", *_args(system, workload)], env
    ray_env = dict(env, OT_BACKEND="ray")
    if workload == "startup":  # the olympipe_typed snippet, on Ray: it starts Ray itself
        return [sys.executable, "-m", "benchmarks.bench_one", *_args(OURS, workload)], ray_env
    return [sys.executable, "-c", RAY_CHILD, *_args(system, workload)], ray_env


def _args(system: str, workload: str) -> list[str]:
    return ["--system", system, "--workload", workload, "--json"]


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# -- formatting --


def fmt_value(workload: str, v: float) -> str:
    if math.isnan(v):
        return "-"
    if workload == "identity":
        return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k"
    if workload in ("cpu", "cpu_unbalanced", *workloads.SYNTHETIC):
        return f"{v:.2f}"
    if workload == "startup":
        return f"{v:.0f}"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def fmt_cell(workload: str, cell: Cell | None, notes: list[str], system: str) -> str:
    if not runs_on(system, workload):
        return "n/a"
    if cell is None or not cell.runs:
        return "not run"
    problem = cell.problem
    if problem is None:
        return fmt_value(workload, cell.median)
    status = str(problem.get("status", "failed"))
    reason = str(problem.get("reason", ""))
    notes.append(f"[{len(notes) + 1}] {system} / {workload}: {status}: {reason}")
    label = {"wrong": "WRONG", "timeout": "TIMEOUT", "failed": "FAILED"}.get(status, status.upper())
    if status == "wrong":
        short = reason.split(":")[0].split(" at ")[0][:9]
        return f"{label} {short}[{len(notes)}]"
    return f"{label}[{len(notes)}]"


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [title]
    for k, row in enumerate([header, *rows]):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return f"{a / b:.2f}x"


# -- main --

#: The packages whose versions each run records.
DISTRIBUTIONS = (
    "olympipe",
    "pypeln",
    "mpipe",
    "mpire",
    "spdl",
    "numpy",
    "pillow",
    "olympipe_typed",
)


def machine() -> dict[str, Any]:
    versions: dict[str, str] = {}
    for dist in DISTRIBUTIONS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "cores": cores(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg": os.getloadavg(),
        "versions": versions,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run (< 60 s)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per cell, median kept (default: "
        + ", ".join(f"{n} for {w}" for w, n in REPEATS.items())
        + f", {DEFAULT_REPEAT} for the others; 1 with --quick)",
    )
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma-separated ({','.join(SYSTEMS)})"
    )
    parser.add_argument(
        "--workloads", default=",".join(workloads.WORKLOADS), help="comma-separated"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per run (120; 30 with --quick)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    names = [w for w in args.workloads.split(",") if w]
    for bad in [s for s in systems if s not in SYSTEMS] + [
        w for w in names if w not in workloads.WORKLOADS
    ]:
        parser.error(f"unknown system or workload {bad!r}")

    def repeat_of(workload: str) -> int:
        if args.repeat is not None:
            return int(args.repeat)
        return 1 if args.quick else REPEATS.get(workload, DEFAULT_REPEAT)

    timeout: float = args.timeout if args.timeout is not None else (30.0 if args.quick else 120.0)

    info = machine()
    iters = fns.calibrate()
    env = dict(os.environ, OT_BENCH_BURN_ITERS=str(iters), PYTHONUNBUFFERED="1")
    backend = env.get("OT_BACKEND", "process")
    print(
        f"machine: {info['cores']} cores, Python {info['python']}, {info['platform']}, {info['date']}, "
        f"load {info['loadavg'][0]:.2f}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print(
        f"busy loop: {iters} iterations = {fns.BURN_MS:g} ms; runs per cell (median kept): "
        + ", ".join(f"{n} {repeat_of(n)}" for n in names)
        + "; systems in turn, the order rotated each run; "
        f"timeout {timeout:.0f} s; olympipe_typed backend: {backend}"
        + (" (QUICK sizes)" if args.quick else "")
    )

    cells: dict[str, dict[str, Cell]] = {w: {} for w in names}
    t_start = time.perf_counter()
    for name in names:
        repeat = repeat_of(name)
        for r in range(repeat):
            # Rotated each run, so that no system always follows the same neighbour (Ray's
            # start, say) or always comes first.
            for system in systems[r % len(systems) :] + systems[: r % len(systems)]:
                if not runs_on(system, name):
                    continue
                cell = cells[name].setdefault(system, Cell())
                if cell.problem is not None:
                    continue  # one failure decides the cell: do not wait for it again
                res = run_child(system, name, quick=args.quick, timeout=timeout, env=env)
                cell.runs.append(res)
                value = fmt_value(name, float(res.get("value", math.nan)))
                status = res.get("status")
                extra = "" if status == "ok" else f"  {status}: {res.get('reason')}"
                host = res.get("host", {})
                extra += f"  host {100 * host.get('share', math.nan):.1f}%"
                if res.get("attempts", 1) > 1:
                    extra += f" (attempt {res['attempts']})"
                print(
                    f"  {name:15} run {r + 1}/{repeat}  {system:15} {value:>8}{extra}",
                    file=sys.stderr,
                    flush=True,
                )

    def med(name: str, system: str) -> float:
        cell = cells.get(name, {}).get(system)
        return cell.median if cell is not None else math.nan

    # Ideals of the CPU-bound workloads: total CPU work / min(cores, stage workers), the work
    # being the single loop's time (the ideal, which the targets use); and the loop
    # split over the cores, run at once, measured (a cross-check: what this machine's cores do
    # together; busy at once, two vCPUs of a shared VM may each run slower than one alone, or,
    # in a quiet moment, faster than the single loop's run suggests).
    # The skewed workloads' ideal is the total CPU work over the cores, whatever the stage
    # workers: the best any plan could do.
    ideals: dict[str, dict[str, Any]] = {}
    for name in ("cpu", "cpu_unbalanced", *workloads.SYNTHETIC):
        if name not in cells:
            continue
        w = workloads.get(name, quick=args.quick)
        nominal = workloads.nominal_cpu_seconds(w)
        loop = med(name, "loop")
        measured = not math.isnan(loop)
        work = loop if measured else nominal
        cores = info["cores"]
        parallel = cores if name in workloads.SYNTHETIC else min(cores, w.total_workers)
        ideals[name] = {
            "total_cpu_s": work,
            "from": "the loop's time" if measured else "nominal, the loop was not measured",
            "nominal_cpu_s": nominal,
            "parallelism": parallel,
            "ideal_s": work / parallel,
            "split_s": med(name, SPLIT),
        }

    notes: list[str] = []
    header = ["workload (unit)", *systems]
    rows = [
        [
            f"{name} ({UNITS[name]})",
            *(fmt_cell(name, cells[name].get(s), notes, s) for s in systems),
        ]
        for name in names
    ]
    print()
    print(
        table(
            "FIGURES (median of runs; higher is better for items/s and MB/s, lower for the rest)",
            header,
            rows,
        )
    )
    for note in notes:
        print("  " + note)

    ratio_rows: list[list[str]] = []
    for name in names:
        direction = "higher is better" if name in HIGHER_IS_BETTER else "lower is better"
        ratio_rows.append(
            [
                f"{name} / {REFERENCE} ({direction})",
                *(ratio(med(name, s), med(name, REFERENCE)) for s in systems),
            ]
        )
        if name in ideals:
            ideal = float(ideals[name]["ideal_s"])
            split = float(ideals[name]["split_s"])
            ratio_rows.append(
                [
                    f"{name} / ideal, loop / cores (lower is better)",
                    *(ratio(med(name, s), ideal) for s in systems),
                ]
            )
            ratio_rows.append(
                [
                    f"{name} / ideal, {SPLIT} (lower is better)",
                    *(ratio(med(name, s), split) for s in systems),
                ]
            )
    print()
    print(table("RATIOS (vs the hand-written chain, and vs the ideal for cpu)", header, ratio_rows))
    same_round = [
        f"{name}{' (both with hints)' if hinted else ''} "
        f"{paired(name, cells, OURS + hinted, REFERENCE + hinted, values=True):.2f}x"
        for name in names
        if name in README_ROWS
        for hinted in (HINTS if name in workloads.HINTED else "",)
        if OURS + hinted in cells[name] and REFERENCE + hinted in cells[name]
    ]
    if same_round:
        print(
            f"  {OURS} / {REFERENCE}, the median of same-round ratios (the host's drift cancels): "
            + "; ".join(same_round)
        )
    for name, ideal_info in ideals.items():
        w = workloads.get(name, quick=args.quick)
        over = (
            f"cores = {ideal_info['total_cpu_s']:.2f} s / {info['cores']}"
            if name in workloads.SYNTHETIC
            else f"min(cores, stage workers) = {ideal_info['total_cpu_s']:.2f} s / "
            f"min({info['cores']}, {w.total_workers})"
        )
        print(
            f"  ideal {name} = total CPU work / {over} = "
            f"{ideal_info['ideal_s']:.2f} s (total CPU work: {ideal_info['from']}; nominal "
            f"{w.n} x {workloads.nominal_cpu_seconds(w) / w.n * 1000:.0f} ms = {ideal_info['nominal_cpu_s']:.2f} s)"
        )
        print(
            f"  ideal {name}, measured = {SPLIT}'s time = {ideal_info['split_s']:.2f} s: the loop "
            f"over each core's share of the items, the cores busy at once "
            f"({ideal_info['split_s'] / ideal_info['ideal_s']:.2f}x the loop / cores)"
        )
    if "memory" in cells:
        base = {
            s: cells["memory"][s].median_of("base_rss_mb") for s in systems if s in cells["memory"]
        }
        print(
            "  memory: the parent's peak RSS (VmHWM) streaming the source to a counter; RSS after imports, "
            "before the run: "
            + ", ".join(f"{s} {v:.0f}" for s, v in base.items() if not math.isnan(v))
            + " MB"
        )
    aims = {"identity": "of the items/s, aim >= 0.80x", "cpu": "the time, aim <= 1.05x"}
    journal_costs = [
        f"{name} {ratio(med(name, JOURNAL), med(name, OURS))} {aim}"
        for name, aim in aims.items()
        if name in cells and JOURNAL in cells[name] and OURS in cells[name]
    ]
    if journal_costs:
        print(f"  journal cost, {JOURNAL} / {OURS} in this run: " + "; ".join(journal_costs))
    print(
        "  startup: whole `python -c '<3-stage pipeline over 1 item>'` minus `python -c pass`, median wall time"
    )
    print("  how each system runs:")
    for s in systems:
        print(f"    {s}: {describe(s)}")

    load_end = os.getloadavg()[0]
    load_start = float(info["loadavg"][0])
    print(
        f"  load average (1 min): {load_start:.1f} at the start, {load_end:.1f} at the end, on {info['cores']} cores"
    )
    print(
        f"  host (steal + CPU outside the measured processes, as a share of wall x cores; a run "
        f"where it took over {100 * DISTURBED:.0f}% and {1000 * DISTURBED_S:.0f} ms was taken "
        f"again, {RETRIES} times at most, not for Ray): "
        + "; ".join(host_summary(name, cells[name]) for name in names)
    )
    hand_cpu = (
        med("cpu", REFERENCE) / float(ideals["cpu"]["ideal_s"]) if "cpu" in ideals else math.nan
    )
    # The load average counts this benchmark's own processes (and lags a minute): the host's
    # share, measured around each run, says whether others competed for the cores.
    host_busy = [name for name in names if host_share(cells[name]) > DISTURBED]
    if host_busy or hand_cpu > 1.3:
        print(
            "  WARNING: the machine was busy (other processes competed for the cores"
            + (f" during {', '.join(host_busy)}" if host_busy else "")
            + (
                f"; the hand-written chain itself took {hand_cpu:.2f}x the ideal"
                if hand_cpu > 1.3
                else ""
            )
            + "): absolute figures, and CPU-bound ones most, are not trustworthy; compare ratios"
        )

    print_against_pool(names, systems, med, ideals, cells)

    targets = check_targets(med, ideals)
    print()
    print(f"TARGETS for {OURS} (backend {backend}):")
    for line in targets:
        print("  " + line)
    if backend != "process":
        print(
            f"  note: OT_BACKEND={backend}: not the process backend, so these verdicts say nothing yet"
        )
    print(f"\n{time.perf_counter() - t_start:.0f} s; results in {args.out}")

    payload = {
        "machine": info,
        "burn_iters": iters,
        "quick": args.quick,
        "repeat": {n: repeat_of(n) for n in names},
        "timeout_s": timeout,
        "ot_backend": backend,
        "ideals": ideals,
        "medians": {n: {s: med(n, s) for s in systems} for n in names},
        "runs": {n: {s: c.runs for s, c in cells[n].items()} for n in names},
        "targets": targets,
        "loadavg_end": load_end,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return 0


def paired(
    name: str, cells: dict[str, dict[str, Cell]], system: str, other: str, *, values: bool = False
) -> float:
    """The median over rounds of ``system``'s throughput over ``other``'s in the same round
    (with ``values``, of its figure over ``other``'s, as the RATIOS table shows them).

    The systems of one round run minutes apart at most, so a drift of the host's CPU speed
    over the whole benchmark cancels out of each round's ratio; it does not out of the ratio
    of two medians taken from different moments. NaN when either cell failed or is missing.
    """
    a, b = cells.get(name, {}).get(system), cells.get(name, {}).get(other)
    if a is None or b is None or a.problem is not None or b.problem is not None:
        return math.nan
    ratios = [
        float(x["value"]) / float(y["value"])
        if values or name in HIGHER_IS_BETTER
        else float(y["value"]) / float(x["value"])
        for x, y in zip(a.runs, b.runs, strict=True)  # run i of every system is in round i
    ]
    return statistics.median(ratios) if ratios else math.nan


def print_against_pool(
    names: list[str],
    systems: list[str],
    med: Any,
    ideals: dict[str, dict[str, Any]],
    cells: dict[str, dict[str, Cell]],
) -> None:
    """The image and skewed workloads against one Pool over the composed stages: each system's
    throughput as a ratio to the pool's (of the medians, and round by round), its share of the
    ideal, and what the hints gave."""
    shown = [name for name in ("images", *workloads.SYNTHETIC) if name in names]
    if not shown:
        return

    def throughput(name: str, system: str) -> float:
        value = float(med(name, system))
        return value if name in HIGHER_IS_BETTER else 1.0 / value

    def fmt(value: float) -> str:
        return "-" if math.isnan(value) else f"{value:.2f}x"

    rows: list[list[str]] = []
    for name in shown:
        rows.append(
            [
                f"{name}: throughput / {POOL}'s",
                *(
                    ratio(throughput(name, s), throughput(name, POOL))
                    if runs_on(s, name)
                    else "n/a"
                    for s in systems
                ),
            ]
        )
        rows.append(
            [
                f"{name}: same round, median",
                *(
                    fmt(paired(name, cells, s, POOL)) if runs_on(s, name) else "n/a"
                    for s in systems
                ),
            ]
        )
        if name in ideals:
            ideal = float(ideals[name]["ideal_s"])
            rows.append(
                [
                    f"{name}: % of the ideal",
                    *(percent(ideal, med(name, s)) if runs_on(s, name) else "n/a" for s in systems),
                ]
            )
            # The loop of the same round sets that round's ideal: the host's drift cancels.
            share = float(ideals[name]["parallelism"])
            rows.append(
                [
                    f"{name}: % of the ideal, same round",
                    *(
                        f"{100 * paired(name, cells, s, 'loop') / share:.0f}%"
                        if runs_on(s, name) and not math.isnan(paired(name, cells, s, "loop"))
                        else "n/a"
                        for s in systems
                    ),
                ]
            )
    print()
    print(
        table(
            f"AGAINST {POOL.upper()} (throughput ratio to multiprocessing.Pool over the composed "
            "stages, and the ideal's share: higher is better)",
            ["workload", *systems],
            rows,
        )
    )
    hinted = [name for name in names if name in workloads.HINTED]
    if hinted:
        print(
            f"  {OURS}{HINTS} / {OURS}, throughput (the stages' hints against none: the planner's "
            "choice): "
            + "; ".join(
                f"{name} {ratio(throughput(name, OURS + HINTS), throughput(name, OURS))}"
                f" ({fmt(paired(name, cells, OURS + HINTS, OURS))} round by round)"
                for name in hinted
            )
        )


def percent(ideal: float, value: float) -> str:
    """``ideal / value`` as a percentage ("-" when either is missing)."""
    if math.isnan(ideal) or math.isnan(value) or value == 0:
        return "-"
    return f"{100 * ideal / value:.0f}%"


def _host_runs(cells: dict[str, Cell]) -> list[dict[str, Any]]:
    """The runs whose host share counts: completed ones (a run killed on timeout leaves
    processes nobody waits for), and not Ray's (its daemons count as the host's)."""
    return [
        r
        for system, cell in cells.items()
        if system != RAY
        for r in cell.runs
        if "host" in r and r.get("status") == "ok"
    ]


def host_share(cells: dict[str, Cell]) -> float:
    """The host's median share over a workload's runs (NaN when none counts)."""
    runs = _host_runs(cells)
    return statistics.median(float(r["host"]["share"]) for r in runs) if runs else math.nan


def host_summary(workload: str, cells: dict[str, Cell]) -> str:
    """The host's median share over a workload's runs, and how many runs it disturbed."""
    runs = _host_runs(cells)
    if not runs:
        return f"{workload} -"
    shares = [float(r["host"]["share"]) for r in runs]
    again = sum(int(r.get("attempts", 1)) - 1 for r in runs)
    still = sum(1 for x in shares if x > DISTURBED)
    return (
        f"{workload} {100 * statistics.median(shares):.1f}% (max {100 * max(shares):.0f}%, "
        f"{again} taken again, {still} kept above)"
    )


def check_targets(med: Any, ideals: dict[str, dict[str, Any]]) -> list[str]:
    """One line per target of the issue: met / NOT met / not measured."""
    lines: list[str] = []

    def verdict(label: str, value: float, limit: float, ok_if_higher: bool) -> None:
        if math.isnan(value) or math.isnan(limit):
            lines.append(f"{label}: not measured")
            return
        met = value >= limit if ok_if_higher else value <= limit
        lines.append(f"{label}: {'met' if met else 'NOT met'} ({value:.4g} vs {limit:.4g})")

    for name, unit in (("identity", "items/s"), ("arrays", "MB/s")):
        verdict(
            f"{name} >= 0.8x {REFERENCE}'s {unit}",
            med(name, OURS),
            0.8 * med(name, REFERENCE),
            True,
        )
    for name in ("cpu", "cpu_unbalanced"):
        # The ideal: the total CPU work (the loop's time) over the cores. The measured
        # split is printed beside it, with the hand-written chain's ratio for scale.
        info = ideals.get(name, {})
        per_core = float(info.get("ideal_s", math.nan))
        verdict(
            f"{name} time <= 1.05x the ideal, loop / cores (s)",
            med(name, OURS),
            1.05 * per_core,
            False,
        )
        split = float(info.get("split_s", math.nan))
        if not math.isnan(split):
            lines.append(
                f"  (against {SPLIT}, {split:.4g} s: {med(name, OURS) / split:.3f}x;"
                f" {REFERENCE} {med(name, REFERENCE) / split:.3f}x)"
            )
    verdict("startup < 50 ms above `python -c pass`", med("startup", OURS), 50.0, False)
    verdict(
        f"memory peak RSS <= 1.2x {REFERENCE}'s (MB)",
        med("memory", OURS),
        1.2 * med("memory", REFERENCE),
        False,
    )
    return lines


if __name__ == "__main__":
    sys.exit(main())
