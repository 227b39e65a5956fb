"""Augmentation ops of the template generator: each op's edits, protection of slot words, determinism."""

from __future__ import annotations

import random

import pytest

from framework.plugins.generators._augment import (
    OP_NAMES,
    augment,
    case,
    drop,
    is_protected,
    protected_words,
    punct,
    split_word,
    swap,
    typo,
)

SEEDS = range(200)
NONE: frozenset[str] = frozenset()


def outcomes(op, text: str, protected: frozenset[str] = NONE) -> set[str | None]:
    return {op(text, random.Random(seed), protected) for seed in SEEDS}


def test_split_word_and_protection_ignore_punctuation_and_case() -> None:
    assert split_word('("Router"),') == ('("', "Router", '"),')
    protected = protected_words(["main loop", "README.md"])
    assert protected == frozenset({"main", "loop", "readme.md"})
    assert is_protected("LOOP?", protected)
    assert is_protected("readme.md,", protected)
    assert not is_protected("find", protected)
    assert not is_protected("?", protected)


def test_typo_edits_one_long_unprotected_word() -> None:
    text = "please locate Router quickly"
    protected = protected_words(["Router"])
    for result in outcomes(typo, text, protected):
        assert result is not None and result != text
        before, after = text.split(), result.split()
        changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        assert len(changed) == 1
        i = changed[0]
        assert before[i] != "Router"
        assert after[i][0] == before[i][0]
        assert abs(len(after[i]) - len(before[i])) <= 1


def test_typo_covers_swap_drop_and_double() -> None:
    results = outcomes(typo, "open file")
    assert "oepn file" in results or "opne file" in results
    assert "opn file" in results
    assert "oppen file" in results


def test_typo_skips_short_numeric_and_protected_words() -> None:
    assert typo("go to it", random.Random(0), NONE) is None
    assert typo("go 12345", random.Random(0), NONE) is None
    assert typo("open parser", random.Random(0), frozenset({"open", "parser"})) is None


def test_case_variants() -> None:
    assert outcomes(case, "Where is main") == {"where is main", "WHERE IS MAIN", "Where Is Main"}
    assert case("123 456", random.Random(0), NONE) is None


def test_punct_adds_or_removes_trailing_mark_and_commas() -> None:
    assert outcomes(punct, "where is it") == {"where is it?", "where is it.", "where is it!"}
    assert outcomes(punct, "hey, where is it?") == {"hey, where is it", "hey where is it?"}
    assert outcomes(punct, "Paris, please", frozenset({"paris"})) == {
        "Paris, please?",
        "Paris, please.",
        "Paris, please!",
    }
    assert punct("?", random.Random(0), NONE) is None


def test_drop_removes_one_unprotected_word_and_keeps_two() -> None:
    text = "please show the Router class"
    protected = protected_words(["Router"])
    results = outcomes(drop, text, protected)
    assert results == {
        "show the Router class",
        "please the Router class",
        "please show Router class",
        "please show the Router",
    }
    assert drop("find it?", random.Random(0), NONE) is None
    assert drop("a b c", random.Random(0), frozenset({"a", "b", "c"})) is None


def test_drop_of_last_word_keeps_trailing_punctuation() -> None:
    results = outcomes(drop, "where is main loop?", frozenset({"where", "is", "main"}))
    assert results == {"where is main?"}


def test_swap_exchanges_adjacent_unprotected_words_keeping_punctuation() -> None:
    results = outcomes(swap, "where is it?", NONE)
    assert results == {"is where it?", "where it is?"}
    protected = protected_words(["main loop"])
    assert outcomes(swap, "open main loop now", protected) == {None}
    assert swap("hello", random.Random(0), NONE) is None
    assert swap("go go", random.Random(0), NONE) is None


def test_augment_is_deterministic_and_records_applied_ops() -> None:
    text = "could you please find the parser module"
    protected = protected_words(["parser"])
    first = [augment(text, random.Random(seed), OP_NAMES, 3, protected) for seed in SEEDS]
    second = [augment(text, random.Random(seed), OP_NAMES, 3, protected) for seed in SEEDS]
    assert first == second
    for result, applied in first:
        assert 1 <= len(applied) <= 3
        assert len(set(applied)) == len(applied)
        assert set(applied) <= set(OP_NAMES)
        assert "parser" in result.casefold()
    assert {op for _, applied in first for op in applied} == set(OP_NAMES)


def test_augment_skips_ops_that_cannot_apply() -> None:
    for seed in SEEDS:
        assert augment("hello", random.Random(seed), ["drop", "swap"], 2, NONE) == ("hello", [])


def test_augment_rejects_unknown_or_missing_ops() -> None:
    with pytest.raises(ValueError, match="augment needs ops"):
        augment("find it", random.Random(0), ["shout"], 1, NONE)
    with pytest.raises(ValueError, match="augment needs ops"):
        augment("find it", random.Random(0), [], 1, NONE)
