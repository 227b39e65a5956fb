"""What the core hands to plugins, and what plugins hand back.

Plugins are plain functions ``plugin(inputs, params, ctx)`` registered in ``framework.registry``:

- generator: ``(params, ctx: GenerateContext) -> Iterable[dict]`` yields rows (see ``framework.data.rows``).
- validator: ``(rows: Sequence[dict], params, ctx: ValidateContext) -> Iterable[Rejection]``; a layer
  sees only the rows every earlier layer accepted.
- splitter: ``(rows: Sequence[dict], params, ctx: SplitContext) -> SplitResult``; rows arrive already
  deduplicated, and the core re-checks that no normalised text lands in two splits.
- source: ``(params, ctx: SourceContext) -> Iterable[dict]`` yields real rows (``provenance.synthetic``
  false); its ``Params`` has ``files() -> list[Path]`` naming the files it reads (they feed fingerprints).
- trainer: ``(train_rows, eval_rows, params, ctx: TrainContext) -> TrainResult``.
- exporter: ``(params, ctx: ExportContext) -> ExportResult``.
- calibrator: ``(params, ctx: CalibrateContext) -> CalibrationResult``.
- reporter: ``(params, ctx: ReportContext) -> Path`` (the report it wrote); the bundle stage runs it into the
  bundle, and every run into its run record.

What a plugin may import from ``framework`` (checked by ``tests/unit/test_import_graph.py``):

- the plugin API: ``framework.plugin_api``, ``framework.registry``, ``framework.errors``;
- helpers meant for plugins: ``framework.io``, ``framework.redact``, ``framework.models``,
  ``framework.data`` (rows, seeding, templating), ``framework.evaluation`` (metrics, calibration, headline),
  ``framework.llm``, ``framework.runtime``, ``framework.toolcalls`` (tool declarations and the models of their
  calls) and ``framework.config.schema`` (``IntentSpec``, ``RecipeConfig``);
- and other modules of ``framework.plugins``.

Never ``framework.cli``, ``framework.pipeline``, ``framework.stages`` or the rest of ``framework.config``: they
run plugins, and a plugin that reaches into them breaks when they change. A package that adds stage kinds and
targets (entry point ``intentcraft.targets``) is not a plugin: it builds on ``framework.pipeline.runner``
(``StageDef``, ``RecipeSection``, ``StageRun``), ``framework.pipeline.targets`` and ``framework.pipeline.facts``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from framework.config.schema import IntentSpec
from framework.toolcalls.spec import ToolCallsSpec


def _ignore(*_: object) -> None:
    return None


class ProgressBar(Protocol):
    """One progress bar: ``bar(n)`` advances it; ``bar.note(text)`` shows live figures (loss, phase) beside it."""

    def __call__(self, n: int = 1) -> None: ...

    def note(self, text: str) -> None: ...


class TaskFactory(Protocol):
    """``task(description, total, unit="rows")`` adds a bar (``framework.pipeline.progress.Progress.task``)."""

    def __call__(self, description: str, total: int | None, unit: str = "rows") -> ProgressBar: ...


@dataclass
class GenerateContext:
    """Inputs of one generator instance.

    Attributes:
        name: The generator's key in ``generate.generators`` (written to ``provenance.generator``).
        plugin_id: Canonical plugin id (written to ``provenance.plugin``).
        intents: Every intent of the recipe.
        slots: Slot lists per intent (recipe-level overlaid with the intent's own).
        counts: Rows wanted per intent from this generator.
        seed: Seed for this generator instance (already mixed with its name).
        work_dir: Directory where the generator may write extra artifacts.
        advance: Progress callback; call with the number of rows just produced.
        warn: Records a warning that is shown in the run summary and kept in the manifest.
        note: Replaces the live figures shown beside the progress bar.
        resume_dir: A directory that survives an interrupted run of this stage (same fingerprint); a
            generator that calls remote services keeps its journal there to resume without asking twice.
        limit: Most records a resumable generator may request in this run (``--limit``); None: no limit.
            A generator that stops short raises ``framework.errors.StageStopped``.
        fingerprint: The generate stage's fingerprint (for provenance of error records).
        details: Filled by the generator; kept under ``generators.<name>`` in the stage manifest.
        tool_calls: The recipe's tools, for a tool-call recipe (its intents are the tools and ``complete``).
    """

    name: str
    plugin_id: str
    intents: dict[str, IntentSpec]
    slots: dict[str, dict[str, list[str]]]
    counts: dict[str, int]
    seed: int
    work_dir: Path
    advance: Callable[[int], None] = _ignore
    warn: Callable[[str], None] = _ignore
    note: Callable[[str], None] = _ignore
    resume_dir: Path | None = None
    limit: int | None = None
    fingerprint: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    tool_calls: ToolCallsSpec | None = None


@dataclass
class ValidateContext:
    """Inputs of one validation layer (``tool_calls``: the recipe's tools, for a tool-call recipe)."""

    layer: str
    intents: dict[str, IntentSpec]
    seed: int
    advance: Callable[[int], None] = _ignore
    warn: Callable[[str], None] = _ignore
    tool_calls: ToolCallsSpec | None = None


@dataclass(frozen=True)
class Rejection:
    """Why a row was rejected. The stage adds the layer name."""

    row_id: str
    rule: str
    reason: str


@dataclass
class SplitContext:
    """Inputs of the splitter."""

    intents: dict[str, IntentSpec]
    seed: int
    advance: Callable[[int], None] = _ignore
    warn: Callable[[str], None] = _ignore


@dataclass
class SplitResult:
    """Row id -> split name for every row, plus facts for the report and manifest."""

    assignments: dict[str, str]
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class SourceContext:
    """Inputs of one source (real labelled data)."""

    name: str
    plugin_id: str
    intents: dict[str, IntentSpec]
    split: str | None
    seed: int
    advance: Callable[[int], None] = _ignore
    warn: Callable[[str], None] = _ignore


@dataclass
class TrainContext:
    """Inputs of a trainer. ``labels`` fixes the order of the model's outputs; ``cache_dir`` is where a model
    converted from another format (a GGUF file) is kept between runs."""

    labels: list[str]
    work_dir: Path
    seed: int
    task: TaskFactory
    warn: Callable[[str], None] = _ignore
    log: Callable[[str], None] = _ignore
    cache_dir: Path | None = None


@dataclass
class TrainResult:
    """A trained model directory (Hugging Face layout: config, weights, tokenizer.json) and its facts."""

    model_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportContext:
    """Inputs of an exporter: the trained model, its labels and the eval rows for parity and accuracy checks."""

    model_dir: Path
    labels: list[str]
    eval_rows: list[dict[str, Any]]
    max_length: int
    work_dir: Path
    task: TaskFactory
    warn: Callable[[str], None] = _ignore


@dataclass
class ExportResult:
    """The runtime model (``model_path``, usually INT8) and the measurements that gate it."""

    model_path: Path
    reference_accuracy: float
    exported_accuracy: float
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class CalibrateContext:
    """Inputs of a calibrator: eval-split logits of the exported model and the true label indices."""

    logits: Any  # numpy.ndarray, shape (n, k)
    label_ids: Any  # numpy.ndarray of int, shape (n,)
    labels: list[str]
    fallback_intent: str | None
    work_dir: Path
    warn: Callable[[str], None] = _ignore


@dataclass
class CalibrationResult:
    """What the runtime needs (temperature, thresholds) and the before/after metrics for the report."""

    temperature: float
    thresholds: dict[str, float]
    global_threshold: float
    metrics: dict[str, Any] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)


@dataclass
class ReportContext:
    """Inputs of a reporter: every stage's manifest and directory, and the directory to write into.

    ``shipped`` is set when the report goes into the bundle: it then leaves out what differs between two
    builds of the same model (when it was written, how long stages took, the stage manifests), so a rebuild
    ships the same bytes; the run's own report keeps them.
    """

    recipe_name: str
    recipe_file: str
    run_dir: Path
    manifests: dict[str, dict[str, Any]]
    stage_dirs: dict[str, Path]
    shipped: bool = False
