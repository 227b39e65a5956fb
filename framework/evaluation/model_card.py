"""The bundle's README.md: what the router does, what it was trained on, how well it did, how to load it."""

from __future__ import annotations

from typing import Any

from framework import __version__
from framework.evaluation.calibration import checks_markdown, manifest_checks
from framework.evaluation.headline import headline, headline_markdown
from framework.evaluation.run_facts import RunFacts
from framework.pipeline.facts import EvaluateFacts

SYNTHETIC_NOTE = (
    "> **Synthetic evaluation.** The test rows were generated from the recipe's own templates, so these "
    "numbers measure agreement with the templates, not accuracy on real traffic. Evaluate on real labelled "
    "queries (a `sources` entry pinned to `split: test`) before trusting them."
)


def _data_table(counts: dict[str, dict[str, int]]) -> list[str]:
    lines = ["| split | real rows | synthetic rows |", "|---|---:|---:|"]
    for split, kinds in counts.items():
        lines.append(f"| {split} | {kinds.get('real', 0)} | {kinds.get('synthetic', 0)} |")
    return lines


def _metrics_lines(manifests: dict[str, dict[str, Any]], evaluated: EvaluateFacts) -> list[str]:
    evidence = evaluated.overall.evidence
    lines = [
        f"Evaluated on the {evaluated.evaluated_split} split ({evidence} rows) with the files in this bundle.",
        "",
        *headline_markdown(headline(manifests)),
    ]
    lines += _calibration_check_lines(manifests)
    if evidence != "real":
        lines += ["", SYNTHETIC_NOTE]
    return lines


def _calibration_check_lines(manifests: dict[str, dict[str, Any]]) -> list[str]:
    """The calibration checks of the eval split and of the evaluated split: warnings first, in full."""
    checks = [check for _, check in manifest_checks(manifests)]
    return ["", "### Calibration checks", "", *checks_markdown(checks)] if checks else []


def render_card(recipe: Any, manifests: dict[str, dict[str, Any]], data_counts: dict[str, dict[str, int]]) -> str:
    """Markdown model card for a bundle built from ``recipe`` (a ValidatedRecipe) by a run with ``manifests``."""
    config = recipe.config
    facts = RunFacts.from_manifests(manifests)
    if facts.train is None or facts.evaluate is None:
        raise ValueError("a model card needs the train and evaluate stages' facts")
    trained = facts.train.train
    display = config.display_labels
    intents = [
        f"- `{display.get(name, name)}`{f' (intent `{name}`)' if name in display else ''}"
        f"{' (fallback)' if spec.out_of_scope else ''}: {spec.description}".rstrip(": ")
        for name, spec in config.intents.items()
    ]
    if display:
        intents.append(
            f"\n{len(display)} labels from the data are not valid intent names: the recipe uses the "
            "name in brackets, the router returns the label (`intent_names` in `bundle.json` maps one to the other)."
        )
    lines = [
        f"# {config.name} intent router",
        "",
        f"{config.description or 'An intent router.'} Built by intentcraft {__version__} from `{recipe.source}`.",
        "",
        f"## Intents ({len(config.intents)})",
        *intents,
        "",
        "## Training data",
        *_data_table(data_counts),
        "",
        f"Model: `{trained.model}` ({trained.model_origin}), {trained.epochs_run} epochs "
        f"(best: {trained.best_epoch}), max_length {facts.train.max_length}.",
        "",
        "## Metrics",
        *_metrics_lines(manifests, facts.evaluate),
        "",
        "## Use it",
        "Python (needs onnxruntime, tokenizers and numpy; not torch):",
        "```python",
        "from framework.runtime import Router",
        "router = Router.load('path/to/bundle')  # verifies checksums.json first",
        "result = router.predict(['who calls authenticate_user'])[0]",
        "print(result.intent, result.confidence, result.decision)",
        "```",
        'Command line: `intentcraft predict path/to/bundle "who calls authenticate_user"`.',
        "",
        "Any ONNX runtime: tokenize with `tokenizer.json` (Hugging Face tokenizers), truncate to `max_length` from "
        "`bundle.json`, feed the `inputs` it lists as int64 (`input_ids`, `attention_mask`, and `token_type_ids` as "
        "zeros where listed; one text per batch for results that do not depend on batch neighbours), read `logits`. "
        "Calibrated probabilities are `softmax(logits / temperature)` "
        "with `temperature` from `calibration.json`; accept the top intent when its probability is at least "
        "`thresholds[intent]` (`global_threshold` for an intent without one) and, where `calibration.json` has an "
        "`ood` section, its out-of-distribution score is at most `ood.threshold`; otherwise route to "
        "`fallback_intent`. The scores: `mahalanobis`, `min_k |x @ whitening - means[k]|^2` with `x` the graph's "
        "`embedding` output and both arrays from `ood.npz`; `energy`, `-T logsumexp(logits / T)`; `max_softmax`, "
        "one minus the top probability. Labels are in `labels.json`, in logit order. `checksums.json` holds the "
        "SHA-256 of every file.",
        "",
    ]
    return "\n".join(lines)
