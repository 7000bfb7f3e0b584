"""The run report, progress display, graph renderings and worker log forwarding."""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Literal

import pytest

from olympipe_typed import Pipeline, RunReport, StageError, StageReport, source, stage

if TYPE_CHECKING:
    from pathlib import Path

LOCAL = ["inline", "thread", "process"]
Local = Literal["inline", "thread", "process"]
N = 40
SLOW = 0.01


@stage
def prepare(x: int) -> int:
    return x + 1


@stage
def crunch(x: int) -> int:
    time.sleep(SLOW)
    return x * 2


@stage
def label(x: int) -> str:
    return f"#{x}"


def slow_middle() -> Pipeline[str]:
    return source(range(N)) >> prepare >> crunch >> label


@pytest.mark.parametrize("backend", [*LOCAL, "ray"])
def test_the_slow_stage_is_named_the_bottleneck(
    backend: Local | Literal["ray"], request: pytest.FixtureRequest
) -> None:
    if backend == "ray":
        request.getfixturevalue("ray_local")
    assert slow_middle().last_report is None
    p = slow_middle()
    # One group per stage, as written (fused, the three would share one group's workers).
    assert p.run(backend=backend, plan="per_stage") == [f"#{(x + 1) * 2}" for x in range(N)]
    report = p.last_report
    assert report is not None
    assert report.completed
    assert [s.name for s in report.stages] == ["prepare", "crunch", "label"]
    for s in report.stages:
        assert (s.items_in, s.items_out, s.workers) == (N, N, 1)
    slow = report.stage("crunch")
    assert report.bottleneck is slow
    assert slow.busy >= N * SLOW * 0.9
    assert slow.busy <= report.wall
    assert report.stage("prepare").utilization < 0.3
    assert report.stage("label").utilization < 0.3
    if backend != "ray":  # on Ray, a run this short spends half its time between calls
        assert slow.utilization > 0.7
        assert report.hint.startswith("crunch was busy ")
        assert "give it more workers (workers=2 or more)" in report.hint
    text = str(report)
    assert text.splitlines()[0].startswith(f"run report: {report.wall:.2f} s on backend")
    for name in ("prepare", "crunch", "label"):
        assert any(line.startswith(name) for line in text.splitlines())
    assert text.splitlines()[-1] == f"bottleneck: {report.hint}"


def test_workers_are_counted_and_summed() -> None:
    p = source(range(N)) >> crunch.options(workers=2)
    assert len(p.run()) == N
    report = p.last_report
    assert report is not None
    (s,) = report.stages
    assert (s.workers, s.items_in, s.items_out) == (2, N, N)
    # Two workers share the work: the run takes about half the summed busy time.
    assert s.busy >= N * SLOW * 0.9
    assert report.wall < s.busy * 0.9


def test_queue_fill_and_blocked_time_show_which_side_waits() -> None:
    """Before a slow stage the queue is full and the producer blocked; after it, starved."""
    p = source(range(300)) >> prepare >> crunch.options(name="slow") >> label
    p.run(plan="per_stage")  # each stage's own queue
    report = p.last_report
    assert report is not None
    _, slow, after = report.stages
    assert slow.queue_fill is not None
    assert after.queue_fill is not None
    assert slow.queue_fill > 0.8  # input always waiting for the slow stage
    assert after.queue_fill < 0.5  # the stage after it waits for each item
    assert after.waiting > after.busy


def test_skipped_items_are_in_the_report() -> None:
    def odd_fails(x: int) -> int:
        if x % 2:
            raise ValueError(x)
        return x

    p = source(range(10)) >> stage(odd_fails).options(on_error="skip")
    assert p.run() == [0, 2, 4, 6, 8]
    report = p.last_report
    assert report is not None
    assert report.stages[0].skipped == 5
    assert report.to_dict()["stages"][0]["skipped"] == 5


def test_a_failed_run_leaves_an_incomplete_report() -> None:
    def boom(x: int) -> int:
        if x == 3:
            raise RuntimeError(x)
        return x

    p = source(range(10)) >> stage(boom)
    with pytest.raises(StageError):
        p.run()
    report = p.last_report
    assert report is not None
    assert not report.completed
    assert "(did not complete)" in str(report).splitlines()[0]


def test_run_all_leaves_the_report_on_every_pipeline() -> None:
    base = source(range(5))
    a, b = base.task(lambda x: x + 1), base.task(str)
    Pipeline.wait_for_all_results([a, b])
    assert a.last_report is not None
    assert a.last_report is b.last_report
    assert sorted(s.name for s in a.last_report.stages) == ["<lambda>", "str"]


def test_plot_writes_a_png_with_one_lane_per_stage(tmp_path: Path) -> None:
    from PIL import Image

    one = source(range(N)) >> crunch
    three = slow_middle()
    one.run()
    three.run()
    assert one.last_report is not None
    assert three.last_report is not None
    slow = three.last_report.stage("crunch")
    assert max(slow.timeline) > 0.5  # the lane shows the busy stage
    assert len(slow.timeline) >= 2
    heights: list[int] = []
    for name, report in (("one", one.last_report), ("three", three.last_report)):
        path = tmp_path / f"{name}.png"
        report.plot(path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            heights.append(image.size[1])
    # Each lane adds the same height: three lanes are two lanes taller than one.
    lane = (heights[1] - heights[0]) / 2
    assert lane > 40


def test_plot_without_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    report = RunReport("inline", 1.0, [])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"olympipe_typed\[plot\]"):
        report.plot("never.png")


def test_no_work_no_bottleneck() -> None:
    report = RunReport("inline", 1.0, [])
    assert report.bottleneck is None
    assert report.hint == "no stage did any work"


# --- progress ---


@pytest.mark.parametrize("backend", LOCAL)
def test_progress_shows_every_stage_and_the_total(
    backend: Local, capsys: pytest.CaptureFixture[str]
) -> None:
    slow_middle().run(backend=backend, progress=True)
    err = capsys.readouterr().err
    for name in ("prepare", "crunch", "label"):
        last = [line for line in err.replace("\n", "\r").split("\r") if name in line][-1]
        assert f"{N}/{N}" in last


def test_progress_without_tqdm_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    slow_middle().run(progress=True)
    err = capsys.readouterr().err
    assert err.endswith(f"prepare {N}/{N} | crunch {N}/{N} | label {N}/{N}\n")


def test_progress_in_a_terminal_of_no_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pseudo-terminal nobody sized reports 0 x 0: the bars are drawn all the same."""
    import fcntl
    import io
    import os
    import pty
    import struct
    import termios
    import threading

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the slave side is closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    terminal = io.TextIOWrapper(io.FileIO(slave, "w"), encoding="utf-8", write_through=True)
    try:
        monkeypatch.setattr(sys, "stderr", terminal)
        slow_middle().run(progress=True)
    finally:
        monkeypatch.undo()
        terminal.close()
        reader.join(timeout=10)
        os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace")
    for name in ("prepare", "crunch", "label"):
        assert any(name in line and f"{N}/{N}" in line for line in text.split("\r")), text


def test_no_progress_unless_asked(capsys: pytest.CaptureFixture[str]) -> None:
    slow_middle().run()
    assert capsys.readouterr().err == ""


# --- renderings ---


@stage
def minus_one(x: int) -> int:
    return x - 1


def fan_graph() -> Pipeline[str]:
    base = source(range(3)) >> prepare
    return (base >> (crunch.options(workers=3) | minus_one)) >> label


def test_to_mermaid() -> None:
    assert fan_graph().to_mermaid() == (
        "flowchart LR\n"
        '    n0(["source"])\n'
        '    n1["prepare"]\n'
        '    n2["crunch ×3"]\n'
        '    n3["minus_one"]\n'
        '    n4(("fan-in"))\n'
        '    n5["label"]\n'
        "    n0 --> n1\n"
        "    n1 --> n2\n"
        "    n1 --> n3\n"
        "    n2 --> n4\n"
        "    n3 --> n4\n"
        "    n4 --> n5\n"
        '    out0[/"output 0"/]\n'
        "    n5 --> out0\n"
    )


def test_to_dot() -> None:
    dot = source(["a"]).filter(lambda s: bool(s)).explode(list).to_dot()
    assert dot == (
        "digraph pipeline {\n"
        "    rankdir=LR;\n"
        "    node [shape=box];\n"
        '    n0 [label="source" shape="cylinder"];\n'
        '    n1 [label="<lambda> (filter)"];\n'
        '    n2 [label="list (flat)"];\n'
        "    n0 -> n1;\n"
        "    n1 -> n2;\n"
        '    out0 [label="output 0" shape="plaintext"];\n'
        "    n2 -> out0;\n"
        "}\n"
    )


def test_quotes_are_escaped() -> None:
    p = source([1]) >> prepare.options(name='say "hi"')
    assert 'n1["say #quot;hi#quot;"]' in p.to_mermaid()
    assert 'n1 [label="say \\"hi\\""];' in p.to_dot()


# --- logging from workers ---


@stage(workers=1)  # one worker: its records come in order, from "olympipe:chatty:0"
def chatty(x: int) -> int:
    logging.getLogger("olympipe_tests.chatty").info("item %d", x)
    if x == 2:
        try:
            int("bad two")
        except ValueError:
            logging.getLogger("olympipe_tests.chatty").exception("failed on %d", x)
    return x


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_log_records_reach_the_callers_handlers(
    method: Literal["fork", "spawn"], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert (source(range(4)) >> chatty).run(start_method=method) == [0, 1, 2, 3]
    records = [r for r in caplog.records if r.name == "olympipe_tests.chatty"]
    assert [r.getMessage() for r in records] == [
        "item 0",
        "item 1",
        "item 2",
        "failed on 2",
        "item 3",
    ]
    for r in records:
        assert r.__dict__["stage"] == "chatty"
        assert r.processName == "olympipe:chatty:0"
    assert records[3].levelno == logging.ERROR
    assert records[3].exc_text is not None
    assert "ValueError: invalid literal for int() with base 10: 'bad two'" in records[3].exc_text


def test_worker_logs_follow_the_callers_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    (source(range(3)) >> chatty).run()
    assert [r.getMessage() for r in caplog.records if r.name == "olympipe_tests.chatty"] == [
        "failed on 2"
    ]


def test_cpu_time_is_told_apart_from_waiting_in_a_stage() -> None:
    """A sleeping stage is busy but uses no CPU; a computing one uses CPU."""

    def spin(x: int) -> int:
        deadline = time.thread_time() + 0.005
        while time.thread_time() < deadline:
            pass
        return x

    p = source(range(N)) >> crunch >> stage(spin).options(name="spin")
    p.run()
    report = p.last_report
    assert report is not None
    sleepy, busy = report.stage("crunch"), report.stage("spin")
    assert sleepy.cpu < 0.2 * sleepy.busy
    assert busy.cpu >= N * 0.005 * 0.9


def test_all_cpus_busy_is_said_before_anything_else() -> None:
    """When the stages' CPU time fills every core, more workers cannot help: the hint says so,
    even if no single stage was busy most of the time."""
    stages = [
        StageReport("a", 2, 10, 10, busy=1.0, waiting=1.0, blocked=0.0, queue_fill=None, cpu=0.9),
        StageReport("b", 2, 10, 10, busy=1.2, waiting=0.8, blocked=0.0, queue_fill=None, cpu=1.0),
    ]
    report = RunReport("process", 1.0, stages, cores=2)
    assert report.hint.startswith("the stages kept all 2 CPUs busy (1.9 of 2; b used the most)")
    idle = RunReport("process", 10.0, stages, cores=2)
    assert idle.hint.startswith("no stage was busy most of the time")
