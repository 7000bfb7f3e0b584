"""A long run that survives its dataset: failures collected, a hung item stopped, a crash resumed.

    python -m examples.long_run

The job decodes "files" (numbers standing in for paths): one in ten is corrupt and raises,
one is a file on which the decoder hangs. The run collects the failures in a file instead of
stopping at the first, stops the hung item after a second, and keeps a journal, so that a
second run with the same journal (after a crash, say) does not redo what is done. Then the
failures are fixed and re-run by themselves.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from olympipe_typed import load_failures, source, stage


class CorruptFile(Exception):
    """What a decoder raises on a file it cannot read."""


@stage(on_error="collect", item_timeout=1.0)
def decode(path: int) -> int:
    if path == 77:  # the decoder spins forever on this one
        while True:
            time.sleep(0.01)
    if path % 10 == 3:
        msg = f"file {path} is corrupt"
        raise CorruptFile(msg)
    return path * 2


@stage
def decode_fixed(path: int) -> int:
    """The decoder after the bug fix: it reads every file."""
    return path * 2


@stage
def save(image: int) -> str:
    return f"saved {image}"


def main() -> None:
    files = range(300)
    with tempfile.TemporaryDirectory() as work:
        failures = Path(work) / "failures.jsonl"
        journal = Path(work) / "journal.db"
        job = source(files) >> decode >> save

        done = job.run(failures=failures, journal=journal)
        report = job.last_report
        assert report is not None
        print(report)  # the table, and a line: failures collected: 31 (decode 31)
        assert len(done) == 300 - 31

        # The same call again, as after a crash: the journal has every item, nothing runs.
        assert job.run(failures=failures, journal=journal) == done

        # Look at what failed, then re-run exactly those items through the fixed stage.
        failed = load_failures(failures)
        kinds = sorted({f.error_type.rsplit(".", 1)[-1] for f in failed})
        print(f"{len(failed)} failures: {kinds}")
        assert kinds == ["CorruptFile", "ItemTimeout"]
        fixed = (source(f.item for f in failed) >> decode_fixed >> save).run()
        assert sorted(done + fixed) == sorted(f"saved {2 * x}" for x in files)
        print(f"{len(fixed)} items re-run after the fix: all {len(files)} files saved")


if __name__ == "__main__":
    main()
