"""Quick start: typed stages, one process per stage, a slow stage given several workers.

Run it with ``python -m examples.quickstart``.
"""

from __future__ import annotations

import time

from olympipe_typed import Pipeline, batch, source, stage


@stage
def times_2(x: int) -> int:
    """A fast stage."""
    return x * 2


@stage(workers=4)  # the slow stage gets 4 processes; order is kept
def to_label(x: int) -> str:
    """A slow stage: 20 ms of waiting per item."""
    time.sleep(0.02)
    return f"item-{x}"


def main() -> None:
    """Build the pipeline (nothing runs yet), run it, check the result."""
    pipeline: Pipeline[str] = source(range(40)) >> times_2 >> to_label
    started = time.perf_counter()
    labels = pipeline.run()
    elapsed = time.perf_counter() - started
    assert labels == [f"item-{2 * i}" for i in range(40)], labels
    print(
        f"{len(labels)} labels in {elapsed:.2f} s (one worker would need ~0.8 s): {labels[:3]}..."
    )

    # The same stages, as a reusable composite, then grouped in batches of 16.
    label_twice = times_2 >> to_label
    groups = (source(range(20)) >> label_twice >> batch(16)).run()
    assert [len(g) for g in groups] == [16, 4]
    print("batches:", [len(g) for g in groups])


if __name__ == "__main__":
    main()
