"""The ``Tool calls`` section of the markdown report: rows per tool and status, the exported files, what leaving
``None`` fields out saves on the recipe's tokenizer, and sample rows per tool (from the ``tool_export`` stage)."""

from __future__ import annotations

from typing import Any

from framework.toolcalls.evaluation import HEAD_ROWS, SCORE_ROWS

from ._sections import Cell, Report, as_dict, fmt

TOOL_EXPORT = "tool_export"
TOOL_EVALUATE = "tool_evaluate"
TOOL_SELECTOR = "tool_selector"
LORA_TRAIN = "lora_train"
COMPLETE = "complete"


def _per_tool(report: Report, facts: dict[str, Any]) -> list[str]:
    per_label = as_dict(facts.get("per_label"))
    rows = []
    for label, counts in sorted(per_label.items()):
        split = as_dict(counts)
        status = COMPLETE if label == COMPLETE else "running"
        total = sum(v for v in split.values() if isinstance(v, int))
        rows.append([label, status, split.get("train"), split.get("eval"), split.get("test"), total])
    return [
        "### Rows per tool and status",
        "",
        *report.table(["tool", "status", "train", "eval", "test", "total"], rows),
    ]


def _files(report: Report, facts: dict[str, Any]) -> list[str]:
    files, lines = as_dict(facts.get("files")), as_dict(facts.get("lines"))
    rows = [
        [fmt, split, Cell(f"`{name}`"), lines.get(split)]
        for fmt, per in files.items()
        for split, name in as_dict(per).items()
    ]
    intro = (
        "Chat files hold each example's messages and its rendering by the tokenizer's chat template, cut into "
        "`prompt` and `completion` (train on the completion only); OpenAI files are chat fine-tuning JSONL. Every "
        "line was read back into the recipe's tool-call union."
    )
    return ["### Exported files", "", intro, "", *report.table(["format", "split", "file", "lines"], rows)]


def _tokens(report: Report, facts: dict[str, Any]) -> list[str]:
    tokens, tokenizer = as_dict(facts.get("tokens")), as_dict(facts.get("tokenizer"))
    if not tokens:
        return []
    rows = [
        ["assistant turn, without null fields (what is exported)", tokens.get("completion_tokens_mean")],
        ["assistant turn, with null fields written out", tokens.get("completion_tokens_with_nulls_mean")],
        ["saved per example by leaving nulls out", tokens.get("saved_per_example_mean")],
        ["saved over the split", tokens.get("saved_total")],
        ["prompt (system + user turns, rendered)", tokens.get("prompt_tokens_mean")],
    ]
    where = f"Mean tokens per example of the {tokens.get('split', 'train')} split ({tokens.get('examples')} examples) "
    where += f"on the tokenizer `{tokenizer.get('name')}` ({tokenizer.get('origin')})."
    return ["### Tokens", "", where, "", *report.table(["measure", "tokens"], rows)]


def _samples(report: Report, facts: dict[str, Any]) -> list[str]:
    samples = [as_dict(s) for split in as_dict(facts.get("samples")).values() for s in split or []]
    rows = [[s.get("label"), s.get("query"), Cell(f"`{fmt(s.get('call'))}`")] for s in samples]
    return ["### Sample rows (test split)", "", *report.table(["tool", "query", "call"], rows)] if rows else []


def _training(report: Report) -> list[str]:
    train = as_dict((report.manifest(LORA_TRAIN) or {}).get("train"))
    if not train:
        return []
    history = [as_dict(h) for h in train.get("history") or []]
    rows = [[h.get("epoch"), h.get("train_loss"), h.get("eval_loss"), h.get("tokens_per_second")] for h in history]
    intro = (
        f"LoRA on `{train.get('model')}` ({train.get('model_origin')}): {train.get('trainable_parameters')} trainable "
        f"parameters of {train.get('parameters')}, {train.get('train_rows')} train and {train.get('eval_rows')} eval "
        f"examples, peak memory {train.get('peak_memory_mb')} MB."
    )
    table = report.table(["epoch", "train loss", "eval loss", "tokens/s"], rows)
    return ["### LoRA training", "", intro, "", *table]


def _scores(report: Report) -> list[str]:
    manifest = report.manifest(TOOL_EVALUATE)
    if manifest is None:
        return []
    after, before = as_dict(manifest.get("after")), as_dict(manifest.get("before"))
    rows = [[label, before.get(key) if before else "not measured", after.get(key)] for label, key in SCORE_ROWS]
    lines = ["### Evaluation on the test split", ""]
    if manifest.get("evidence") == "synthetic":
        lines += ["> **Synthetic rows: these numbers measure agreement with the recipe's own examples, not real-world "
                  "accuracy.**", ""]  # fmt: skip
    lines += report.table(["metric", "base model, zero-shot", "after LoRA"], rows)
    per_argument = as_dict(after.get("per_argument_match"))
    arg_rows = [[name, as_dict(before.get("per_argument_match")).get(name) if before else None, value]
                for name, value in per_argument.items()]  # fmt: skip
    if arg_rows:
        lines += ["Per argument (share of rows whose value matches exactly):", ""]
        lines += report.table(["argument", "base model, zero-shot", "after LoRA"], arg_rows)
    selector = as_dict(report.manifest(TOOL_SELECTOR))
    return lines + (_heads(report, after, selector) if selector.get("enabled") else [])


def _heads(report: Report, after: dict[str, Any], selector: dict[str, Any]) -> list[str]:
    """The two heads of one spec on the same rows: the LoRA router and the encoder selector."""
    model = as_dict(selector.get("train")).get("model")
    intro = (f"The encoder selector ({model}, ONNX INT8, one query at a time) picks the tool only; "
             "the LoRA router also writes the arguments.")  # fmt: skip
    rows = [[label, after.get(key), selector.get(key)] for label, key in HEAD_ROWS]
    return [f"### Two heads on the same {selector.get('rows')} test rows", "", intro, "",
            *report.table(["", "LoRA router", "encoder selector"], rows)]  # fmt: skip


def tool_calls(report: Report) -> list[str]:
    """The section, when the run has a ``tool_export`` stage."""
    manifest = report.manifest(TOOL_EXPORT)
    if manifest is None:
        return []
    return ["## Tool calls", "", *_per_tool(report, manifest), *_files(report, manifest), *_tokens(report, manifest),
            *_samples(report, manifest), *_training(report), *_scores(report)]  # fmt: skip
