"""Run by test_planner: the caller's peak memory growth, in MB, over a stream of 2,000 outputs
of 200 kB behind one item 1000x slower than the rest (printed last)."""

from __future__ import annotations

import resource
import time

from olympipe_typed import source, stage


def blob(x: int) -> bytes:
    time.sleep(2.0 if x == 0 else 0.002)
    return bytes([x % 256]) * 200_000


def main() -> None:
    warm = source(range(10)) >> stage(blob)
    for _ in warm.stream():
        pass
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    count = 0
    for out in (source(range(2000)) >> stage(blob)).stream():
        assert out[0] == count % 256, "out of order"
        count += 1
    assert count == 2000
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"grew {after - before:.1f}")


if __name__ == "__main__":
    main()
