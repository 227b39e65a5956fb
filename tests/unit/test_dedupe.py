"""Dedupe modes, label conflicts and the leakage guard."""

from __future__ import annotations

from typing import Any

import pytest

from framework.data.dedupe import dedupe_rows, find_leaks


def row(row_id: str, text: str, intent: str = "Greet", split: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"id": row_id, "text": text, "intent": intent, "source": "test", "provenance": {}}
    if split is not None:
        data["split"] = split
    return data


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in rows]


def test_exact_mode_drops_identical_text_and_names_the_kept_row() -> None:
    rows = [row("a", "Hello there"), row("b", "hello there!"), row("c", "Hello there")]
    kept, dropped = dedupe_rows(rows, "exact")
    assert ids(kept) == ["a", "b"]
    assert [(d["row"]["id"], d["rule"]) for d in dropped] == [("c", "exact_duplicate")]
    assert "a" in dropped[0]["reason"]


def test_normalized_mode_drops_case_and_punctuation_variants() -> None:
    rows = [row("a", "Hello there"), row("b", "hello, THERE!"), row("c", "Goodbye"), row("d", "Hello there")]
    kept, dropped = dedupe_rows(rows, "normalized")
    assert ids(kept) == ["a", "c"]
    rules = {d["row"]["id"]: d["rule"] for d in dropped}
    # A variant is a normalised duplicate; a byte-identical copy is reported as an exact one.
    assert rules == {"b": "normalized_duplicate", "d": "exact_duplicate"}
    assert all("row a" in d["reason"] for d in dropped)


def test_none_mode_keeps_duplicates_of_one_intent() -> None:
    rows = [row("a", "Hello"), row("b", "Hello"), row("c", "hello!")]
    kept, dropped = dedupe_rows(rows, "none")
    assert ids(kept) == ["a", "b", "c"]
    assert dropped == []


def test_none_mode_still_drops_label_conflicts_on_identical_text() -> None:
    rows = [row("a", "Hello", "Greet"), row("b", "Hello", "Search"), row("c", "hello", "Search")]
    kept, dropped = dedupe_rows(rows, "none")
    # "hello" differs from "Hello" byte-wise, so mode none leaves it alone.
    assert ids(kept) == ["c"]
    assert [(d["row"]["id"], d["rule"]) for d in dropped] == [
        ("a", "label_conflict"),
        ("b", "label_conflict"),
    ]


@pytest.mark.parametrize("mode", ["exact", "normalized"])
def test_label_conflict_drops_every_row_of_the_text_and_lists_intents(mode: str) -> None:
    rows = [
        row("a", "Open the door", "Open"),
        row("b", "Open the door", "Open"),
        row("c", "Open the door", "Close"),
        row("d", "Close the door", "Close"),
    ]
    kept, dropped = dedupe_rows(rows, mode)
    assert ids(kept) == ["d"]
    assert ids([d["row"] for d in dropped]) == ["a", "b", "c"]
    assert {d["rule"] for d in dropped} == {"label_conflict"}
    assert "Close, Open" in dropped[0]["reason"]


def test_normalized_label_conflict_catches_variants_that_exact_mode_keeps() -> None:
    rows = [row("a", "Stop!", "Halt"), row("b", "stop", "Pause")]
    assert ids(dedupe_rows(rows, "exact")[0]) == ["a", "b"]
    kept, dropped = dedupe_rows(rows, "normalized")
    assert kept == []
    assert [d["rule"] for d in dropped] == ["label_conflict", "label_conflict"]


def test_kept_and_dropped_follow_input_order() -> None:
    texts = ["c", "a", "b", "a", "c", "d", "b"]
    rows = [row(str(i), text) for i, text in enumerate(texts)]
    kept, dropped = dedupe_rows(rows, "exact")
    assert ids(kept) == ["0", "1", "2", "5"]
    assert ids([d["row"] for d in dropped]) == ["3", "4", "6"]


def test_dropped_entries_carry_the_original_row_object() -> None:
    rows = [row("a", "x"), row("b", "x")]
    _, dropped = dedupe_rows(rows, "exact")
    assert dropped[0]["row"] is rows[1]
    assert set(dropped[0]) == {"row", "rule", "reason"}


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="dedupe mode"):
        dedupe_rows([row("a", "x")], "fuzzy")  # type: ignore[arg-type]


def test_empty_input() -> None:
    assert dedupe_rows([], "normalized") == ([], [])
    assert find_leaks([]) == []


def test_find_leaks_reports_text_in_two_splits() -> None:
    rows = [
        row("a", "Hello there", split="train"),
        row("b", "bye", split="train"),
        row("c", "HELLO, there!", split="test"),
        row("d", "hello there", split="eval"),
        row("e", "bye", split="train"),
    ]
    assert find_leaks(rows) == [
        {"normalized": "hello there", "splits": ["eval", "test", "train"], "row_ids": ["a", "c", "d"]}
    ]


def test_find_leaks_allows_duplicates_within_one_split() -> None:
    rows = [row("a", "Hello", split="eval"), row("b", "hello!", split="eval"), row("c", "hi", split="train")]
    assert find_leaks(rows) == []


def test_find_leaks_ignores_rows_without_a_split() -> None:
    rows = [row("a", "Hello", split="train"), row("b", "Hello")]
    assert find_leaks(rows) == []


# --- pinned splits: an official test (or eval) row beats its training copy ---------------------------------


def test_row_pinned_to_test_is_kept_over_an_earlier_unpinned_copy() -> None:
    rows = [row("a", "Hello there"), row("b", "hello, there!", split="test"), row("c", "Goodbye")]
    kept, dropped = dedupe_rows(rows, "normalized")
    assert ids(kept) == ["b", "c"]
    assert [(d["row"]["id"], d["rule"]) for d in dropped] == [("a", "normalized_duplicate")]
    assert "row b" in dropped[0]["reason"] and "pinned to test" in dropped[0]["reason"]


def test_test_pin_beats_eval_pin_beats_train_and_unpinned() -> None:
    rows = [
        row("a", "card lost", split="train"),
        row("b", "card lost", split="eval"),
        row("c", "card lost"),
        row("d", "card lost", split="test"),
        row("e", "card lost", split="eval"),
    ]
    kept, dropped = dedupe_rows(rows, "exact")
    assert ids(kept) == ["d"]
    assert ids([d["row"] for d in dropped]) == ["a", "b", "c", "e"]
    assert all("row d" in d["reason"] for d in dropped)
    assert {d["rule"] for d in dropped} == {"exact_duplicate"}
    eval_over_train = [row("a", "x", split="train"), row("b", "x"), row("c", "x", split="eval")]
    assert ids(dedupe_rows(eval_over_train, "exact")[0]) == ["c"]


def test_among_equal_pins_the_first_row_is_kept_without_a_pin_note() -> None:
    rows = [row("a", "x", split="test"), row("b", "X", split="test"), row("c", "x", split="train")]
    kept, dropped = dedupe_rows(rows, "normalized")
    assert ids(kept) == ["a"]
    assert [d["reason"] for d in dropped] == ["same normalised text as row a", "duplicate of row a"]
    # Pinned to train ranks like an unpinned row: the first one stays.
    assert ids(dedupe_rows([row("p", "y"), row("q", "y", split="train")], "exact")[0]) == ["p"]


def test_pinned_rows_keep_input_order_among_kept_rows() -> None:
    rows = [row("a", "x"), row("b", "y"), row("c", "x", split="test"), row("d", "z")]
    kept, dropped = dedupe_rows(rows, "exact")
    assert ids(kept) == ["b", "c", "d"]
    assert ids([d["row"] for d in dropped]) == ["a"]


def test_label_conflict_drops_pinned_rows_too() -> None:
    rows = [row("a", "Hello", "Greet"), row("b", "hello", "Search", split="test")]
    kept, dropped = dedupe_rows(rows, "normalized")
    assert kept == []
    assert {d["rule"] for d in dropped} == {"label_conflict"}


def test_none_mode_keeps_pinned_duplicates() -> None:
    rows = [row("a", "x"), row("b", "x", split="test")]
    assert dedupe_rows(rows, "none") == (rows, [])
