"""The built-in ``stratified`` splitter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from framework.data.dedupe import dedupe_rows, find_leaks
from framework.data.rows import SPLITS, normalize_text
from framework.data.seeding import make_rng
from framework.plugin_api import SplitContext, SplitResult
from framework.plugins.splitters.stratified import StratifiedParams, stratified
from framework.registry import splitters

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_row(
    row_id: str, text: str, intent: str, template: str | None = None, stream: str | None = None
) -> dict[str, Any]:
    provenance = {"generator": "g", "plugin": "p", "synthetic": True, "template": template, "stream": stream}
    return {"id": row_id, "text": text, "intent": intent, "source": "test", "provenance": provenance}


def distinct_rows(sizes: dict[str, int]) -> list[dict[str, Any]]:
    return [
        make_row(f"{intent}-{i:05d}", f"{intent} utterance {i}", intent)
        for intent, n in sizes.items()
        for i in range(n)
    ]


def run_split(rows: list[dict[str, Any]], seed: int = 7, **params: Any) -> tuple[SplitResult, list[str]]:
    warnings: list[str] = []
    ctx = SplitContext(intents={}, seed=seed, warn=warnings.append)
    return stratified(rows, StratifiedParams(**params), ctx), warnings


def with_splits(rows: list[dict[str, Any]], result: SplitResult) -> list[dict[str, Any]]:
    return [{**row, "split": result.assignments[row["id"]]} for row in rows]


def test_registered_under_its_name() -> None:
    spec = splitters.resolve("stratified")
    assert spec.id == "builtin.stratified.v1"
    assert spec.params is StratifiedParams
    assert spec.func is stratified


@pytest.mark.parametrize(
    "ratios",
    [
        {"train": 0.8, "eval": 0.1, "test": 0.1},
        {"train": 0.7, "eval": 0.2, "test": 0.1},
        {"train": 0.34, "eval": 0.33, "test": 0.33},
    ],
)
def test_ratios_are_honoured_within_one_row_per_split_per_intent(ratios: dict[str, float]) -> None:
    sizes = {"Book": 517, "Cancel": 301, "Other": 182}
    rows = distinct_rows(sizes)
    result, warnings = run_split(rows, ratios=ratios)
    assert len(result.assignments) == 1000 and warnings == []
    for intent, n_rows in sizes.items():
        counts = result.report["counts"][intent]
        assert sum(counts.values()) == n_rows
        for split in SPLITS:
            assert abs(counts[split] - n_rows * ratios[split]) <= 1, (intent, split, counts)
    for split in SPLITS:
        assert result.report["effective_ratios"][split] == pytest.approx(ratios[split], abs=0.003)


def test_report_describes_the_split() -> None:
    rows = [*distinct_rows({"A": 40, "B": 20}), make_row("dup", "a UTTERANCE 3!", "A")]
    result, _ = run_split(rows)
    report = result.report
    assert report["units"] == {"A": 40, "B": 20}  # the variant of "A utterance 3" joins its unit
    assert report["group_by"] == "none"
    assert report["streams_used"] == [] and report["warnings"] == []
    assert sum(sum(c.values()) for c in report["counts"].values()) == len(rows)
    assert sum(report["effective_ratios"].values()) == pytest.approx(1.0)
    assert set(result.assignments) == {row["id"] for row in rows}


def test_same_seed_same_split_and_independent_of_input_order() -> None:
    rows = distinct_rows({"A": 200, "B": 100})
    first, _ = run_split(rows, seed=3)
    again, _ = run_split(rows, seed=3)
    shuffled = list(rows)
    make_rng("shuffle-test").shuffle(shuffled)
    reordered, _ = run_split(shuffled, seed=3)
    other_seed, _ = run_split(rows, seed=4)
    assert first.assignments == again.assignments == reordered.assignments
    assert first.assignments != other_seed.assignments
    assert first.report["counts"] == other_seed.report["counts"]


_SUBPROCESS_SCRIPT = """
import json
from framework.plugin_api import SplitContext
from framework.plugins.splitters.stratified import StratifiedParams, stratified
rows = json.loads(input())
result = stratified(rows, StratifiedParams(group_by="template"), SplitContext(intents={}, seed=11))
print(json.dumps(result.assignments, sort_keys=True))
"""


def test_split_does_not_depend_on_pythonhashseed() -> None:
    rows = [
        make_row(f"{intent}{i}", f"{intent} text {i}", intent, template=f"{intent}-t{i % 9}")
        for intent in ("Alpha", "Beta")
        for i in range(150)
    ]
    expected, _ = run_split(rows, seed=11, group_by="template")
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        completed = subprocess.run(
            [sys.executable, "-c", _SUBPROCESS_SCRIPT],
            input=json.dumps(rows),
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
            check=True,
        )
        assert json.loads(completed.stdout) == expected.assignments


def test_group_by_template_keeps_every_template_in_one_split() -> None:
    rows = [
        make_row(f"{intent}{i}", f"{intent} text {i}", intent, template=f"{intent}-t{i % 12}")
        for intent in ("Alpha", "Beta")
        for i in range(240)
    ]
    grouped, warnings = run_split(rows, group_by="template")
    splits_per_template: dict[str, set[str]] = {}
    for row in rows:
        splits_per_template.setdefault(row["provenance"]["template"], set()).add(grouped.assignments[row["id"]])
    assert all(len(splits) == 1 for splits in splits_per_template.values())
    assert grouped.report["units"] == {"Alpha": 12, "Beta": 12}
    assert warnings == []
    for counts in grouped.report["counts"].values():
        assert all(counts[split] > 0 for split in SPLITS)
    # Without grouping the same rows do spread templates over splits.
    ungrouped, _ = run_split(rows, group_by="none")
    spread = {row["provenance"]["template"] for row in rows if ungrouped.assignments[row["id"]] != "train"}
    assert len(spread) > 12


def test_group_by_template_joins_templates_that_share_a_text() -> None:
    rows = [make_row(f"x{i}", f"x {i}", "A", template="t1") for i in range(5)]
    rows += [make_row(f"y{i}", f"y {i}", "A", template="t2") for i in range(5)]
    rows.append(make_row("bridge", "X 0", "A", template="t2"))  # same normalised text as a t1 row
    rows += [make_row(f"z{i}", f"z {i}", "A", template=f"solo{i}") for i in range(10)]
    result, _ = run_split(rows, group_by="template")
    assert len({result.assignments[r["id"]] for r in rows if r["provenance"]["template"] in ("t1", "t2")}) == 1
    assert result.report["units"] == {"A": 11}


def test_duplicates_of_one_text_share_a_split() -> None:
    rows = distinct_rows({"A": 50})
    rows += [make_row(f"copy{i}", "A utterance 7" + "!" * i, "A") for i in range(20)]
    result, _ = run_split(rows)
    copies = {result.assignments[row["id"]] for row in rows if normalize_text(row["text"]) == "a utterance 7"}
    assert len(copies) == 1


def _random_rows(seed: int, n_rows: int) -> list[dict[str, Any]]:
    """Many duplicates: a small vocabulary, case and punctuation variants, several intents."""
    rng = make_rng("property", seed)
    words = ["book", "a", "flight", "cancel", "my", "order", "help", "now"]
    variants = [str.lower, str.upper, str.title, lambda t: t + "!", lambda t: " " + t + "?"]
    rows = []
    for i in range(n_rows):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
        intent = rng.choice(["Book", "Cancel", "Help"]) if rng.random() < 0.2 else f"I{len(text) % 3}"
        template = f"t{rng.randint(0, 5)}" if rng.random() < 0.7 else None
        stream = rng.choice([None, "train", "eval"])
        rows.append(make_row(f"r{i}", rng.choice(variants)(text), intent, template, stream))
    return rows


@pytest.mark.parametrize("case", range(25))
def test_no_normalised_text_in_two_splits_with_dedupe_none(case: int) -> None:
    rows, _ = dedupe_rows(_random_rows(case, 60 + 20 * case), "none")
    group_by = "template" if case % 2 else "none"
    result, _ = run_split(rows, seed=case, group_by=group_by, honor_streams=case % 3 != 0)
    assert set(result.assignments) == {row["id"] for row in rows}
    assert set(result.assignments.values()) <= set(SPLITS)
    assert find_leaks(with_splits(rows, result)) == []


def test_no_leaks_property_with_hypothesis() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")

    texts = st.sampled_from(["Hi", "hi!", "HI", "hello", "Hello.", "bye", "bye bye", "Bye, bye"])
    spec = st.tuples(texts, st.sampled_from(["A", "B"]), st.sampled_from([None, "t1", "t2", "t3"]))

    @hypothesis.settings(max_examples=150, deadline=None)
    @hypothesis.given(st.lists(spec, min_size=1, max_size=40), st.integers(0, 10**6), st.booleans())
    def check(items: list[tuple[str, str, str | None]], seed: int, by_template: bool) -> None:
        rows = [make_row(f"r{i}", text, intent, template) for i, (text, intent, template) in enumerate(items)]
        group_by = "template" if by_template else "none"
        result, _ = run_split(rows, seed=seed, group_by=group_by)
        assert find_leaks(with_splits(rows, result)) == []

    check()


def test_texts_shared_across_intents_are_put_in_one_split_with_a_warning() -> None:
    rows = distinct_rows({"A": 30, "B": 30})
    rows += [make_row("a-hello", "Hello!", "A"), make_row("b-hello", "hello", "B")]
    warned = 0
    for seed in range(20):
        result, warnings = run_split(rows, seed=seed)
        assert result.assignments["a-hello"] == result.assignments["b-hello"]
        assert find_leaks(with_splits(rows, result)) == []
        if warnings:
            assert warnings == [
                "1 normalised text carries more than one intent "
                "(the dedupe mode let them through); their rows were put in one split"
            ]
            warned += 1
    assert warned > 0  # some seeds did split the pair apart before the guard joined them


def test_eval_stream_rows_go_to_eval_and_test_only() -> None:
    rows = [make_row(f"tr{i}", f"train text {i}", "A", stream="train") for i in range(80)]
    rows += [make_row(f"nos{i}", f"plain text {i}", "A") for i in range(20)]
    rows += [make_row(f"ev{i}", f"eval text {i}", "A", stream="eval") for i in range(41)]
    rows += distinct_rows({"B": 100})
    result, warnings = run_split(rows, ratios={"train": 0.6, "eval": 0.3, "test": 0.1})
    splits = {row["id"]: result.assignments[row["id"]] for row in rows}
    assert all(splits[f"tr{i}"] == "train" for i in range(80))
    assert all(splits[f"nos{i}"] == "train" for i in range(20))
    eval_stream = Counter(splits[f"ev{i}"] for i in range(41))
    assert set(eval_stream) == {"eval", "test"}
    assert abs(eval_stream["eval"] - 41 * 0.75) <= 1
    assert result.report["streams_used"] == ["A"]
    assert result.report["counts"]["B"] == {"train": 60, "eval": 30, "test": 10}
    assert warnings == []


def test_streams_ignored_when_not_honoured() -> None:
    rows = [make_row(f"ev{i}", f"eval text {i}", "A", stream="eval") for i in range(50)]
    result, _ = run_split(rows, honor_streams=False)
    assert result.report["streams_used"] == []
    assert result.report["counts"]["A"] == {"train": 40, "eval": 5, "test": 5}


def test_unit_mixing_streams_follows_its_majority() -> None:
    rows = [make_row(f"ev{i}", f"eval text {i}", "A", stream="eval") for i in range(10)]
    rows += [make_row(f"tr{i}", f"train text {i}", "A", stream="train") for i in range(10)]
    # Mostly eval: two eval-stream copies, one train-stream copy.
    rows += [
        make_row("m1", "Mixed one", "A", stream="eval"),
        make_row("m2", "mixed one!", "A", stream="eval"),
    ]
    rows.append(make_row("m3", "MIXED ONE", "A", stream="train"))
    # A tie goes to train.
    rows += [make_row("t1", "tied", "A", stream="eval"), make_row("t2", "Tied", "A", stream="train")]
    result, _ = run_split(rows)
    assert {result.assignments[i] for i in ("m1", "m2", "m3")} <= {"eval", "test"}
    assert len({result.assignments[i] for i in ("m1", "m2", "m3")}) == 1
    assert result.assignments["t1"] == result.assignments["t2"] == "train"


@pytest.mark.parametrize(
    ("ratios", "message"),
    [
        ({"train": 0.8, "eval": 0.1, "test": 0.2}, "sum to 1"),
        ({"train": 0.5, "eval": 0.1}, "sum to 1"),
        ({"train": 1.1, "eval": -0.1, "test": 0.0}, "greater than or equal to 0"),
        ({"train": 0.0, "eval": 0.5, "test": 0.5}, "train must be > 0"),
        ({"train": 0.8, "dev": 0.2}, "train', 'eval' or 'test'"),
        ({"train": float("nan"), "eval": 0.5, "test": 0.5}, "finite"),
    ],
)
def test_invalid_ratios_are_rejected(ratios: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StratifiedParams(ratios=ratios)


def test_params_defaults_and_missing_splits() -> None:
    assert StratifiedParams().ratios == {"train": 0.8, "eval": 0.1, "test": 0.1}
    assert StratifiedParams(ratios={"train": 0.9, "test": 0.1}).ratios == {
        "train": 0.9,
        "eval": 0.0,
        "test": 0.1,
    }
    with pytest.raises(ValidationError):
        StratifiedParams(group_by="paraphrase")
    with pytest.raises(ValidationError):
        StratifiedParams(shuffle=True)


def test_split_with_zero_ratio_gets_no_rows_and_no_warning() -> None:
    result, warnings = run_split(distinct_rows({"A": 30}), ratios={"train": 0.9, "test": 0.1})
    assert result.report["counts"]["A"] == {"train": 27, "eval": 0, "test": 3}
    assert warnings == []


def test_warns_once_per_intent_when_too_few_templates() -> None:
    rows = [make_row(f"tp{i}", f"trace {i}", "TracePath", template=f"t{i % 2}") for i in range(20)]
    rows += [make_row(f"ok{i}", f"ok {i}", "Fine", template=f"t{i % 10}") for i in range(50)]
    result, warnings = run_split(rows, group_by="template")
    assert len(warnings) == 1
    assert warnings == result.report["warnings"]
    message = warnings[0]
    assert message.startswith("TracePath: 2 template groups cannot fill 3 splits with group_by=template")
    assert "test gets no rows" in message
    assert result.report["counts"]["TracePath"]["test"] == 0


def test_min_rows_per_split_is_met_when_units_allow_it() -> None:
    rows = [make_row(f"s{i}", f"small {i}", "Small") for i in range(4)]
    rows += [make_row(f"b{i}", f"big text {i}", "Big", template=f"t{i % 3}") for i in range(90)]
    result, warnings = run_split(rows, group_by="template", ratios={"train": 0.96, "eval": 0.02, "test": 0.02})
    assert warnings == []
    # 4 rows at 96/2/2 would round to 4/0/0; the floor of one row per split wins.
    assert result.report["counts"]["Small"] == {"train": 2, "eval": 1, "test": 1}
    # Three templates of 30 rows: greedy fill alone would put all in train.
    assert result.report["counts"]["Big"] == {"train": 30, "eval": 30, "test": 30}


def test_warns_when_splits_get_fewer_rows_than_the_minimum() -> None:
    result, warnings = run_split(distinct_rows({"Tiny": 5}), min_rows_per_split=2)
    assert len(warnings) == 1
    assert warnings[0].startswith("Tiny: 5 distinct texts (5 rows) cannot give 3 splits 2 rows each")
    assert sum(result.report["counts"]["Tiny"].values()) == 5


# --- pinned splits: rows that arrive with ``split`` set keep it ---------------------------------------------


def pinned_row(row_id: str, text: str, intent: str, split: str) -> dict[str, Any]:
    return {**make_row(row_id, text, intent), "split": split}


def test_pinned_test_rows_stay_in_test_and_ratios_split_the_rest() -> None:
    rows = distinct_rows({"A": 100, "B": 50})
    rows += [pinned_row(f"A-test{i}", f"A official {i}", "A", "test") for i in range(30)]
    rows += [pinned_row(f"B-test{i}", f"B official {i}", "B", "test") for i in range(10)]
    result, warnings = run_split(rows, ratios={"train": 0.9, "eval": 0.1, "test": 0.0})
    assert warnings == []
    assert all(result.assignments[r["id"]] == "test" for r in rows if r.get("split") == "test")
    assert result.report["counts"]["A"] == {"train": 90, "eval": 10, "test": 30}
    assert result.report["counts"]["B"] == {"train": 45, "eval": 5, "test": 10}
    assert result.report["pinned"] == {
        "A": {"train": 0, "eval": 0, "test": 30},
        "B": {"train": 0, "eval": 0, "test": 10},
    }
    assert result.report["units"] == {"A": 130, "B": 60}


def test_pins_to_train_and_eval_are_kept_too() -> None:
    rows = distinct_rows({"A": 40})
    rows += [pinned_row(f"tr{i}", f"pinned train {i}", "A", "train") for i in range(10)]
    rows += [pinned_row(f"ev{i}", f"pinned eval {i}", "A", "eval") for i in range(10)]
    result, _ = run_split(rows, ratios={"train": 0.5, "eval": 0.25, "test": 0.25})
    assert all(result.assignments[f"tr{i}"] == "train" for i in range(10))
    assert all(result.assignments[f"ev{i}"] == "eval" for i in range(10))
    # The 40 unpinned rows alone follow the ratios.
    assert result.report["counts"]["A"] == {"train": 30, "eval": 20, "test": 10}
    assert result.report["pinned"] == {"A": {"train": 10, "eval": 10, "test": 0}}


def test_unpinned_copy_of_a_pinned_text_follows_the_pin() -> None:
    rows = distinct_rows({"A": 60})
    rows += [make_row("copy", "Lost card?", "A"), pinned_row("official", "lost card", "A", "test")]
    for seed in range(5):
        result, _ = run_split(rows, seed=seed, ratios={"train": 0.9, "eval": 0.1})
        assert result.assignments["copy"] == result.assignments["official"] == "test"
        assert find_leaks(with_splits(rows, result)) == []


def test_unit_with_different_pins_goes_to_the_most_held_out_one_with_a_warning() -> None:
    rows = distinct_rows({"A": 30})
    rows += [
        pinned_row("t", "Hello", "A", "train"),
        pinned_row("e", "hello!", "A", "eval"),
        pinned_row("x", "HELLO", "A", "test"),
        pinned_row("t2", "bye", "A", "train"),
        pinned_row("e2", "Bye.", "A", "eval"),
    ]
    result, warnings = run_split(rows)
    assert {result.assignments[i] for i in ("t", "e", "x")} == {"test"}
    assert {result.assignments[i] for i in ("t2", "e2")} == {"eval"}
    assert len(warnings) == 1
    assert warnings[0].startswith("2 texts hold rows pinned to different splits by their sources (e.g. A rows ")
    assert warnings[0].endswith("each went to its most held-out pin (test > eval > train)")
    assert result.report["pinned"]["A"] == {"train": 0, "eval": 2, "test": 3}


def test_text_shared_across_intents_follows_a_pin() -> None:
    rows = distinct_rows({"A": 30, "B": 30})
    rows += [pinned_row("a-hi", "Hi!", "A", "test"), make_row("b-hi", "hi", "B")]
    for seed in range(10):
        result, _ = run_split(rows, seed=seed)
        assert result.assignments["a-hi"] == result.assignments["b-hi"] == "test"


def test_intent_with_only_pinned_rows_warns_about_its_empty_splits() -> None:
    rows = distinct_rows({"A": 30})
    rows += [pinned_row(f"b{i}", f"only test {i}", "B", "test") for i in range(5)]
    result, warnings = run_split(rows, ratios={"train": 0.9, "eval": 0.1})
    assert result.report["counts"]["B"] == {"train": 0, "eval": 0, "test": 5}
    assert warnings == ["B: 0 unpinned distinct texts cannot fill 2 splits; train gets no rows, eval gets no rows"]


def test_pinned_split_is_independent_of_input_order() -> None:
    rows = distinct_rows({"A": 80, "B": 40})
    rows += [pinned_row(f"p{i}", f"pinned {i}", "A" if i % 2 else "B", "test") for i in range(20)]
    first, _ = run_split(rows, seed=5)
    shuffled = list(rows)
    make_rng("pinned-order").shuffle(shuffled)
    again, _ = run_split(shuffled, seed=5)
    assert first.assignments == again.assignments


def test_no_pins_reports_an_empty_pinned_table() -> None:
    result, _ = run_split(distinct_rows({"A": 20}))
    assert result.report["pinned"] == {}
