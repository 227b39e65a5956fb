"""The built-in ``template`` generator: counts, determinism, eval stream, augmentation, sandbox, warnings."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from framework.config.schema import IntentSpec
from framework.data.rows import Row, normalize_text
from framework.errors import StageError
from framework.plugin_api import GenerateContext
from framework.plugins.generators.template import TemplateParams, template
from framework.registry import generators

INTENTS = {
    "SymbolQuery": IntentSpec(
        templates=[
            "where is {{ symbol }} defined",
            "{{ ['find', 'locate', 'search for'] | random }} the {{ kind }} {{ symbol }}",
            "show me, please, every caller of {{ symbol }} in {{ module }}",
        ]
    ),
    "TextSearch": IntentSpec(templates=["search the docs for {{ phrase }}", "grep {{ module }} for {{ phrase }}"]),
}
SLOTS = {
    "SymbolQuery": {
        "symbol": [f"symbol_{i}" for i in range(80)] + ["main loop", "Router"],
        "kind": ["function", "class", "method"],
        "module": [f"pkg/mod_{i}.py" for i in range(10)],
    },
    "TextSearch": {
        "phrase": [f"error code {i}" for i in range(40)],
        "module": [f"pkg/mod_{i}.py" for i in range(10)],
    },
}
COUNTS = {"SymbolQuery": 120, "TextSearch": 80}


def make_ctx(work_dir: Path, **overrides: Any) -> GenerateContext:
    values: dict[str, Any] = {
        "name": "tmpl",
        "plugin_id": "builtin.template.v1",
        "intents": INTENTS,
        "slots": SLOTS,
        "counts": COUNTS,
        "seed": 13,
        "work_dir": work_dir,
    }
    values.update(overrides)
    return GenerateContext(**values)


def generate(work_dir: Path, params: dict[str, Any] | None = None, **overrides: Any) -> list[dict[str, Any]]:
    return list(template(TemplateParams(**(params or {})), make_ctx(work_dir, **overrides)))


def dump_rows(work_dir: str) -> str:
    """Rows of a fixed run as JSON (also called from a subprocess)."""
    return json.dumps(generate(Path(work_dir), {"eval_seed": 99, "augment": {"ratio": 0.5}}), sort_keys=True)


def test_plugin_is_registered() -> None:
    spec = generators.resolve("template")
    assert spec.func is template
    assert spec.params is TemplateParams
    assert spec.id == "builtin.template.v1"


def test_exact_counts_unique_texts_and_valid_rows(tmp_path: Path) -> None:
    rows = generate(tmp_path)
    assert Counter(row["intent"] for row in rows) == COUNTS
    assert len({row["id"] for row in rows}) == len(rows)
    for intent in COUNTS:
        texts = [normalize_text(row["text"]) for row in rows if row["intent"] == intent]
        assert len(set(texts)) == len(texts)
    for row in rows:
        Row.model_validate(row)
        prov = row["provenance"]
        assert row["source"] == prov["generator"] == "tmpl"
        assert prov["plugin"] == "builtin.template.v1"
        assert prov["synthetic"] is True and prov["seed"] == 13 and prov["stream"] is None
        assert prov["template"] == INTENTS[row["intent"]].templates[prov["template_index"]]
        assert row["text"] == " ".join(row["text"].split())


def test_templates_are_used_in_balanced_round_robin(tmp_path: Path) -> None:
    rows = generate(tmp_path, {"augment": {"ratio": 0}})
    uses = Counter(row["provenance"]["template_index"] for row in rows if row["intent"] == "SymbolQuery")
    assert sorted(uses) == [0, 1, 2]
    assert max(uses.values()) - min(uses.values()) <= 2


def test_exhausted_template_gives_way_to_the_others(tmp_path: Path) -> None:
    intents = {"Greet": IntentSpec(templates=["hi there", "hello {{ name }}"])}
    slots = {"Greet": {"name": [f"user{i}" for i in range(50)]}}
    warnings: list[str] = []
    ctx = make_ctx(tmp_path, intents=intents, slots=slots, counts={"Greet": 30}, warn=warnings.append)
    rows = list(template(TemplateParams(augment={"ratio": 0}), ctx))
    assert len(rows) == 30 and not warnings
    assert Counter(row["provenance"]["template_index"] for row in rows) == {0: 1, 1: 29}


def test_same_seed_same_rows_other_seed_other_rows(tmp_path: Path) -> None:
    assert generate(tmp_path) == generate(tmp_path)
    texts = [row["text"] for row in generate(tmp_path)]
    assert texts != [row["text"] for row in generate(tmp_path, seed=14)]


def test_output_is_identical_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    script = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import test_template_generator as t; sys.stdout.write(t.dump_rows({str(tmp_path)!r}))"
    )
    outputs = []
    for hash_seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] == dump_rows(str(tmp_path))
    assert len(json.loads(outputs[0])) == sum(COUNTS.values())


def test_random_filter_follows_the_seed_not_the_global_rng(tmp_path: Path) -> None:
    random.seed(1)
    first = generate(tmp_path, {"augment": {"ratio": 0}})
    random.seed(2)
    second = generate(tmp_path, {"augment": {"ratio": 0}})
    assert first == second
    verbs = {
        row["text"].split(" the ")[0]
        for row in first
        if row["intent"] == "SymbolQuery" and row["provenance"]["template_index"] == 1
    }
    assert verbs == {"find", "locate", "search for"}


def test_eval_stream_split_and_seeds(tmp_path: Path) -> None:
    rows = generate(tmp_path, {"eval_seed": 99, "eval_share": 0.25})
    for intent, count in COUNTS.items():
        streams = Counter(row["provenance"]["stream"] for row in rows if row["intent"] == intent)
        assert streams == {"eval": round(count * 0.25), "train": count - round(count * 0.25)}
        train = {
            normalize_text(r["text"]) for r in rows if r["intent"] == intent and r["provenance"]["stream"] == "train"
        }
        evals = {
            normalize_text(r["text"]) for r in rows if r["intent"] == intent and r["provenance"]["stream"] == "eval"
        }
        assert not train & evals
    assert {row["provenance"]["seed"] for row in rows if row["provenance"]["stream"] == "eval"} == {99}
    assert {row["provenance"]["seed"] for row in rows if row["provenance"]["stream"] == "train"} == {13}
    assert len({row["id"] for row in rows}) == len(rows)


def test_eval_stream_does_not_depend_on_the_run_seed(tmp_path: Path) -> None:
    def split(rows: list[dict[str, Any]], stream: str) -> list[str]:
        return [row["text"] for row in rows if row["provenance"]["stream"] == stream]

    base = generate(tmp_path, {"eval_seed": 99})
    reseeded = generate(tmp_path, {"eval_seed": 99}, seed=14)
    assert split(base, "eval") == split(reseeded, "eval")
    assert split(base, "train") != split(reseeded, "train")
    assert split(base, "eval") != split(generate(tmp_path, {"eval_seed": 100}), "eval")


def test_augmentation_ratio_and_protected_slot_words(tmp_path: Path) -> None:
    rows = generate(tmp_path, {"augment": {"ratio": 0.5, "max_ops": 3}})
    augmented = [row for row in rows if row["provenance"]["augment"]]
    assert 0.4 * len(rows) <= len(augmented) <= 0.5 * len(rows) + 2
    for row in augmented:
        ops = row["provenance"]["augment"]
        assert 1 <= len(ops) <= 3 and len(set(ops)) == len(ops)
    for row in rows:
        for value in row["provenance"]["slots"].values():
            assert value.casefold() in row["text"].casefold()
    assert not any(row["provenance"]["augment"] for row in generate(tmp_path, {"augment": {"ratio": 0}}))


def test_augment_ops_are_limited_to_those_configured(tmp_path: Path) -> None:
    rows = generate(tmp_path, {"augment": {"ratio": 1, "ops": ["case"], "max_ops": 1}})
    assert {tuple(row["provenance"]["augment"]) for row in rows} == {("case",)}


def test_sandbox_escape_raises_stage_error(tmp_path: Path) -> None:
    intents = {**INTENTS, "Evil": IntentSpec(templates=["ok {{ symbol }}", "{{ ''.__class__.__mro__ }}"])}
    ctx = make_ctx(tmp_path, intents=intents, counts={"Evil": 5}, slots={"Evil": {"symbol": ["a", "b"]}})
    with pytest.raises(StageError, match=r"Evil: template #1 .*SecurityError"):
        list(template(TemplateParams(), ctx))


def test_unknown_slot_raises_stage_error_before_any_row(tmp_path: Path) -> None:
    intents = {**INTENTS, "Broken": IntentSpec(templates=["find {{ missing }}"])}
    ctx = make_ctx(tmp_path, intents=intents, counts={"SymbolQuery": 5, "Broken": 5})
    with pytest.raises(StageError, match=r"Broken: template #0 .*slot 'missing' has no values"):
        next(iter(template(TemplateParams(), ctx)))


def test_unreachable_count_warns_once(tmp_path: Path) -> None:
    warnings: list[str] = []
    intents = {"Greet": IntentSpec(templates=["hello {{ name }}", "hi there"])}
    ctx = make_ctx(tmp_path, intents=intents, slots={"Greet": {"name": ["ann", "bob"]}}, counts={"Greet": 10})
    ctx.warn = warnings.append
    rows = list(template(TemplateParams(eval_seed=5, augment={"ratio": 0}), ctx))
    assert sorted(row["text"] for row in rows) == ["hello ann", "hello bob", "hi there"]
    assert warnings == ["Greet: produced 3 unique rows of 10 asked; add templates or slot values"]


def test_intent_without_templates_yields_nothing_and_warns(tmp_path: Path) -> None:
    warnings: list[str] = []
    intents = {**INTENTS, "Empty": IntentSpec(examples=["something"])}
    ctx = make_ctx(tmp_path, intents=intents, counts={"Empty": 4, "TextSearch": 3}, warn=warnings.append)
    rows = list(template(TemplateParams(), ctx))
    assert Counter(row["intent"] for row in rows) == {"TextSearch": 3}
    assert len(warnings) == 1 and warnings[0].startswith("Empty: has no templates")


def test_progress_advances_by_rows_produced(tmp_path: Path) -> None:
    steps: list[int] = []
    rows = list(template(TemplateParams(), make_ctx(tmp_path, advance=steps.append)))
    assert sum(steps) == len(rows) == sum(COUNTS.values())


@pytest.mark.parametrize(
    ("params", "loc", "words"),
    [
        ({"eval_share": 1.0}, ("eval_share",), "less than 1"),
        ({"eval_share": 0}, ("eval_share",), "greater than 0"),
        ({"max_attempts": 0}, ("max_attempts",), "greater than or equal to 1"),
        ({"augment": {"ratio": 0.3, "ops": []}}, ("augment",), "ops must name at least one op when ratio > 0"),
        ({"augment": {"ops": ["shout"]}}, ("augment", "ops", 0), "'typo', 'case', 'punct', 'drop' or 'swap'"),
        ({"augment": {"max_ops": 6}}, ("augment", "max_ops"), "less than or equal to 5"),
        ({"unknown": 1}, ("unknown",), "Extra inputs are not permitted"),
    ],
)
def test_bad_params_are_rejected(params: dict[str, Any], loc: tuple[str | int, ...], words: str) -> None:
    """Each bad value fails on its own field, for the stated reason (and on nothing else)."""
    with pytest.raises(ValidationError) as caught:
        TemplateParams(**params)
    [error] = caught.value.errors()
    assert error["loc"] == loc and words in error["msg"]


def test_params_defaults() -> None:
    params = TemplateParams(augment={"ratio": 0, "ops": []})
    assert params.augment.ops == [] and params.eval_seed is None
    defaults = TemplateParams()
    assert defaults.augment.ops == ["typo", "case", "punct", "drop", "swap"]
    assert (defaults.eval_share, defaults.augment.ratio, defaults.augment.max_ops, defaults.max_attempts) == (
        0.2,
        0.2,
        2,
        30,
    )
