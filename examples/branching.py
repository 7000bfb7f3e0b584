"""Branching: fan-out with ``|``, shared upstream with ``run_all``, gather with ``Pipeline | Pipeline``.

Run it with ``python -m examples.branching``.
"""

from __future__ import annotations

from olympipe_typed import filter_stage, flat_stage, run_all, source, stage


@flat_stage
def words(line: str) -> list[str]:
    """Split a line into words (0..n outputs per input)."""
    return line.split()


@stage
def length(word: str) -> int:
    """The length of a word."""
    return len(word)


@stage
def shout(word: str) -> str:
    """The word in capitals."""
    return word.upper()


@filter_stage
def long_word(word: str) -> bool:
    """Keep words of 5 letters or more."""
    return len(word) >= 5


def main() -> None:
    """Run a fan-out, then two pipelines that share their upstream part."""
    lines = ["typed stages compose", "pipelines branch"]

    # Fan-out: every word goes to both branches; per word, `length` then `shout`.
    both = (source(lines) >> words >> (length | shout)).run()
    assert both[:4] == [5, "TYPED", 6, "STAGES"], both
    print("fan-out:", both)

    # run_all: the shared part (source >> words) runs once, and both children see every word.
    all_words = source(lines) >> words
    long_ones, lengths = run_all(all_words >> long_word >> shout, all_words >> length)
    assert long_ones == ["TYPED", "STAGES", "COMPOSE", "PIPELINES", "BRANCH"], long_ones
    assert lengths == [5, 6, 7, 9, 6], lengths
    print("long words:", long_ones, "lengths:", lengths)

    # Gather: two flows merged into one (`Pipeline[int | str]`).
    merged = (source([1, 2]) | source(["a", "b"])).run()
    assert sorted(map(str, merged)) == ["1", "2", "a", "b"], merged
    print("gathered:", merged)


if __name__ == "__main__":
    main()
