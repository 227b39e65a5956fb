"""Tool-evaluate stage (``tool_calls`` target): write the tool-router bundle, load it as a user would
(``ToolRouter.load``: checksums, base model digest, adapter), and score it on the test split beside the base
model with the same prompt and the same constrained decoding (zero-shot, no adapter)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from framework.config.schema import StrictModel
from framework.errors import StageError
from framework.io import atomic_write_json, atomic_write_text, read_jsonl
from framework.models import resolve_model
from framework.pipeline.facts import SplitFacts, StageFacts
from framework.pipeline.runner import RecipeSection, StageDef, StageRun
from framework.pipeline.targets import register_stage
from framework.runtime.bundle import write_checksums
from framework.stages.lora_train import LoraTrainFacts
from framework.toolcalls.bundle import (
    BaseModelRef,
    Semantics,
    ToolBundleManifest,
    UnsafeRule,
    weights_sha256,
    write_tool_bundle,
)
from framework.toolcalls.decoding import DEFAULT_MAX_CHARS
from framework.toolcalls.evaluation import SCORE_ROWS, score_routes
from framework.toolcalls.router import ToolRouter, base_model_dir

if TYPE_CHECKING:
    from framework.config.check import ValidatedRecipe

BUNDLE_DIR = "bundle"


class ToolEvaluateSettings(StrictModel):
    """The recipe's ``tool_evaluate`` section.

    Attributes:
        max_chars: The longest a free string (a thought, an answer, code) may be in a decoded call.
        max_retries: Regenerations, with the reason as feedback, of a call that breaks a rule after decoding.
        baseline: Also score the base model zero-shot (the same prompt and decoding, no adapter).
        max_rows: Score at most this many test rows (None: all), in the split's order.
        threads: CPU threads (None: torch's default).
    """

    max_chars: int = Field(default=DEFAULT_MAX_CHARS, ge=8, le=100_000)
    max_retries: int = Field(default=1, ge=0, le=10)
    baseline: bool = True
    max_rows: int | None = Field(default=None, ge=1)
    threads: int | None = Field(default=None, ge=1, le=512)


class ToolEvaluateFacts(StageFacts):
    """The bundle and its scores on the test split (``before``: the base model zero-shot)."""

    bundle_dir: str
    evidence: str
    after: dict[str, Any]
    before: dict[str, Any] | None = None


def _semantics(recipe: ValidatedRecipe) -> Semantics:
    """The rules of the recipe's tool_safety layer that the router checks after decoding."""
    for name, bound in recipe.layers.items():
        if bound.spec.name != "tool_safety" or not recipe.config.validate_.layers[name].enabled:
            continue
        params = bound.params
        unsafe = [UnsafeRule(name=u.name, pattern=u.pattern, reason=u.reason) for u in params.unsafe_patterns()]  # type: ignore[attr-defined]
        return Semantics(code_arguments=params.code_arguments, unsafe=unsafe, check_paths=params.check_paths)  # type: ignore[attr-defined]
    return Semantics()


def _base_ref(name: str, origin: str) -> BaseModelRef:
    resolved = resolve_model(name, "trainer.model")
    digest = weights_sha256(Path(resolved.source), resolved.gguf_file) if resolved.is_local else "unverified (hub id)"
    return BaseModelRef(name=name, origin=origin, weights_sha256=digest)


def _route_all(router: ToolRouter, queries: list[str], run: StageRun, what: str) -> list[Any]:
    bar = run.progress.task(f"tool_evaluate: {what}", len(queries), unit="queries")
    routes = []
    for query in queries:
        routes.append(router.route(query))
        bar(1)
    return routes


def run_tool_evaluate(run: StageRun) -> ToolEvaluateFacts:
    """Bundle, load, score after and (``baseline``) before fine-tuning."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe, spec = run.recipe, run.recipe.config.tool_calls
    if spec is None:
        raise StageError("the tool_evaluate stage needs a tool_calls section in the recipe")
    settings = recipe.section("tool_evaluate", ToolEvaluateSettings)
    trained = run.facts("lora_train", LoraTrainFacts)
    cache = Path(recipe.config.paths.outputs) / "cache" / "models"
    ref = _base_ref(trained.base_model, str(trained.train.model_dump().get("model_origin", "")))
    base_dir = base_model_dir(ref, cache)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    manifest = ToolBundleManifest(
        recipe=recipe.name, labels=spec.labels, base_model=ref, max_chars=settings.max_chars,
        max_retries=settings.max_retries, semantics=_semantics(recipe),
    )  # fmt: skip
    bundle = run.work_dir / BUNDLE_DIR
    write_tool_bundle(bundle, manifest, spec, run.path("lora_train", trained.adapter_dir), tokenizer)
    write_checksums(bundle)
    test = read_jsonl(run.path("split", run.facts("split", SplitFacts).files["test"]))[: settings.max_rows]
    if not test:
        raise StageError("tool_evaluate: the test split is empty; give split.ratios.test a share")
    queries, expected = [row["text"] for row in test], [row["output"] for row in test]
    router = ToolRouter.load(bundle, cache, settings.threads)
    after = score_routes(_route_all(router, queries, run, "fine-tuned"), expected)
    before = None
    if settings.baseline:
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
        zero_shot = ToolRouter(base, tokenizer, spec, router.rules, settings.max_retries, settings.max_chars)
        before = score_routes(_route_all(zero_shot, queries, run, "base model, zero-shot"), expected)
    evidence = "synthetic" if all(row["provenance"].get("synthetic") for row in test) else "real or mixed"
    evaluation = {"split": "test", "evidence": evidence, "after": after, "before": before}
    atomic_write_json(bundle / "evaluation.json", evaluation)
    atomic_write_text(bundle / "model_card.md", model_card(recipe.name, manifest, evaluation, trained))
    write_checksums(bundle)
    return ToolEvaluateFacts(bundle_dir=BUNDLE_DIR, evidence=evidence, after=after, before=before)


def _cell(metrics: dict[str, Any] | None, key: str) -> str:
    if metrics is None:
        return "not measured"
    value = metrics.get(key)
    if value is None:
        return "n/a"
    return str(value) if key.startswith("latency") else f"{100 * value:.1f}%"


def model_card(name: str, manifest: ToolBundleManifest, evaluation: dict[str, Any], trained: LoraTrainFacts) -> str:
    """The bundle's model card: what it routes to, the base model, training and the scores before and after."""
    after, before = evaluation["after"], evaluation["before"]
    lines = [
        f"# {name}: tool-call router", "",
        f"A LoRA adapter on `{manifest.base_model.name}` ({manifest.base_model.origin}; weights SHA-256 "
        f"`{manifest.base_model.weights_sha256}`) that turns a request into one call of: "
        + ", ".join(f"`{label}`" for label in manifest.labels) + ".", "",
        "Decoding is constrained to the tools' JSON schema; after decoding, the rules a grammar cannot express are "
        f"checked and a failing call is regenerated with feedback (up to {manifest.max_retries} times).", "",
        f"## Evaluation on the test split ({after['rows']} rows)", "",
    ]  # fmt: skip
    if evaluation["evidence"] == "synthetic":
        lines += ["> **Synthetic rows: these numbers measure agreement with the recipe's own examples, not "
                  "real-world accuracy.**", ""]  # fmt: skip
    lines += ["| metric | base model, zero-shot | after LoRA |", "|---|---:|---:|"]
    lines += [f"| {label} | {_cell(before, key)} | {_cell(after, key)} |" for label, key in SCORE_ROWS]
    train = trained.train.model_dump()
    lines += ["", "## Training", "", f"- trainable parameters: {train.get('trainable_parameters')} of "
              f"{train.get('parameters')}", f"- epochs run: {train.get('epochs_run')}, best eval loss "
              f"{train.get('best_eval_loss')} (epoch {train.get('best_epoch')})", ""]  # fmt: skip
    return "\n".join(lines)


TOOL_EVALUATE = register_stage(
    StageDef(
        name="tool_evaluate",
        upstream=("split", "tool_export", "lora_train"),
        config_keys=("tool_calls", "validate"),
        run=run_tool_evaluate,
        facts=ToolEvaluateFacts,
        sections=(RecipeSection("tool_evaluate", ToolEvaluateSettings),),
    )
)
