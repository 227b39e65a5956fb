"""What each built-in stage publishes in its manifest, as pydantic models.

A stage returns its facts; the pipeline validates them against the stage's model before it publishes the
manifest, and a downstream stage reads them back typed with ``run.facts(stage, Model)`` and finds the
files they name with ``run.path(stage, name)`` (never by a path it hard-codes). Defaults of file-name fields
are the names earlier versions wrote, so manifests already in a cache keep reading the same.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from framework.data.rows import SPLITS
from framework.evaluation.ood import Detection

F = TypeVar("F", bound=BaseModel)


def facts_from_manifest(manifest: dict[str, Any], model: type[F]) -> F:
    """A stage's published facts read from its manifest as ``model`` (the manifest's bookkeeping keys left out)."""
    return model.model_validate({key: manifest[key] for key in model.model_fields if key in manifest})


class StageFacts(BaseModel):
    """Base of every stage's facts: unknown keys are errors when a stage publishes."""

    model_config = ConfigDict(extra="forbid")


class PluginMetrics(BaseModel):
    """Metrics a plugin reports: the figures the core renders are typed, any others are kept as published."""

    model_config = ConfigDict(extra="allow")


class TrainMetrics(PluginMetrics):
    """What the trainer reports: the base model, epochs, the best epoch and where it trained (None: not reported)."""

    model: str | None = None
    model_origin: str | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    best_eval_accuracy: float | None = None
    device: str | None = None


class ExportMetrics(PluginMetrics):
    """The exported model's eval accuracy against the trained model's (the export gate), and file sizes."""

    reference_accuracy: float
    exported_accuracy: float
    accuracy_drop: float
    max_accuracy_drop: float
    sizes_bytes: dict[str, int] = Field(default_factory=dict)


class CalibrationMetrics(PluginMetrics):
    """The fitted calibration (``CalibrationFile``'s fields) with its before/after metrics on the eval split and
    the calibration checks (``framework.evaluation.calibration``)."""

    temperature: float
    thresholds: dict[str, float]
    global_threshold: float
    fallback_intent: str | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    mce_before: float | None = None
    mce_after: float | None = None
    ece_noise_mean: float | None = None
    ece_noise_p95: float | None = None
    checks: list[dict[str, Any]] = Field(default_factory=list)


class HeldOutCalibration(PluginMetrics):
    """ECE and MCE of the calibrated confidences on the evaluated rows, with chance levels and checks."""

    ece: float
    mce: float | None = None
    ece_noise_mean: float | None = None
    ece_noise_p95: float | None = None
    checks: list[dict[str, Any]] = Field(default_factory=list)


class OutOfScope(PluginMetrics):
    """Recall and precision of the out-of-scope intent (None where undefined, e.g. nothing predicted)."""

    recall: float | None
    precision: float | None
    support: int


class RoutedMetrics(PluginMetrics):
    """The router's decisions with its thresholds: share accepted, accuracy among them and of the final route."""

    coverage: float | None
    selective_accuracy: float | None
    accuracy: float | None
    out_of_scope: OutOfScope | None = None


class GenerateFacts(StageFacts):
    """Rows made, per intent and generator; ``rows_file`` holds them (JSONL)."""

    counts: dict[str, Any]
    verification_sample: dict[str, Any]
    generators: dict[str, Any] | None = None
    rows_file: str = "rows.jsonl"


class ValidateFacts(StageFacts):
    """Rows accepted and rejected, per layer and rule; the files hold them (JSONL)."""

    counts: dict[str, Any]
    examples: dict[str, dict[str, str]]
    survival: dict[str, Any] | None = None
    accepted_file: str = "accepted.jsonl"
    rejected_file: str = "rejected.jsonl"


class SplitFacts(StageFacts):
    """Rows per intent and split; ``files`` names each split's JSONL file."""

    counts: dict[str, Any]
    splitter: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=lambda: {split: f"{split}.jsonl" for split in SPLITS})


class TrainFacts(StageFacts):
    """The trained model: its directory (Hugging Face layout), input length, labels in logit order, metrics.

    ``labels`` is None only in manifests written before the train stage published it (see
    ``framework.stages.common.trained``).
    """

    train: TrainMetrics
    model_dir: str
    max_length: int = Field(gt=0)
    labels: list[str] | None = None
    tokenizer_file: str = "tokenizer.json"

    def tokenizer_path(self) -> str:
        """The tokenizer, relative to the stage's output."""
        return f"{self.model_dir}/{self.tokenizer_file}"


class ExportFacts(StageFacts):
    """The runtime model file and its accuracy against the trained model."""

    export: ExportMetrics
    model_file: str


class OodFacts(BaseModel):
    """The out-of-distribution score the calibrate stage fitted (``calibrate.ood``).

    ``threshold`` keeps ``in_scope_recall`` of the in-scope eval rows; ``file`` is the Mahalanobis arrays (None
    for a logit score), fitted on ``fit_rows`` train rows of ``classes`` in-scope intents; ``eval`` measures
    every score the model allows on the eval split, each at its own threshold for the same recall;
    ``scores_file`` holds the eval scores.
    """

    model_config = ConfigDict(extra="forbid")

    method: str
    threshold: float
    in_scope_recall: float
    file: str | None = None
    fit_rows: int = 0
    classes: int = 0
    eval: dict[str, Detection] = Field(default_factory=dict)
    scores_file: str | None = None

    def calibration(self) -> dict[str, Any]:
        """The ``ood`` section of the bundle's ``calibration.json``."""
        return {
            "method": self.method,
            "threshold": self.threshold,
            "in_scope_recall": self.in_scope_recall,
            "file": self.file,
        }


class CalibrationFacts(StageFacts):
    """Temperature, thresholds and metrics (``calibration``), the file the bundle ships, the plots, and the
    out-of-distribution score (None: ``calibrate.ood.method=none``, or a manifest from before it existed)."""

    calibration: CalibrationMetrics
    plots: list[str] = Field(default_factory=list)
    calibration_file: str = "calibration.json"
    ood: OodFacts | None = None


class EvaluationPart(PluginMetrics):
    """Metrics of one evaluated part (all rows, real rows, synthetic rows): the headline figures typed, the
    rest (per-intent report, confusion matrix, worst examples, ...) kept as published."""

    n: int = Field(ge=0)
    accuracy: float
    macro_f1: float
    evidence: str
    benchmark_evidence: bool = False
    in_scope_accuracy: float | None = None
    out_of_scope: OutOfScope | None = None
    routed: RoutedMetrics | None = None
    calibration: HeldOutCalibration | None = None
    ood: Detection | None = None


class EvaluateFacts(StageFacts):
    """Metrics of the bundle as it ships, on the evaluated split; ``bundle_dir`` holds that bundle.

    ``evaluation`` has the parts ``all``, ``real`` and ``synthetic`` (None when the split has no such rows).
    """

    evaluation: dict[str, EvaluationPart | None]
    evaluated_split: str
    decisions: dict[str, int]
    plots: list[str] = Field(default_factory=list)
    bundle_dir: str = "bundle"

    @property
    def overall(self) -> EvaluationPart:
        """The metrics of all evaluated rows."""
        part = self.evaluation.get("all")
        if part is None:
            raise ValueError("evaluation has no 'all' part")
        return part


class BundleFacts(StageFacts):
    """The shipped bundle: its directory, the checksums of its files, its headline metrics and data counts."""

    bundle_dir: str
    files: dict[str, str]
    metrics: dict[str, Any]
    data: dict[str, dict[str, int]]
