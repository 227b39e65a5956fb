"""A finished run's stage facts, typed: what the run summary, the model card and the report render."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from framework.pipeline.facts import CalibrationFacts, EvaluateFacts, ExportFacts, TrainFacts, facts_from_manifest

F = TypeVar("F", bound=BaseModel)


@dataclass(frozen=True)
class RunFacts:
    """The model stages' facts, each None when the run has no such stage (or another target's stage of that name)."""

    train: TrainFacts | None = None
    export: ExportFacts | None = None
    calibrate: CalibrationFacts | None = None
    evaluate: EvaluateFacts | None = None

    @classmethod
    def from_manifests(cls, manifests: dict[str, dict[str, Any]]) -> RunFacts:
        """The facts of the stages in ``manifests`` (stage name -> manifest)."""
        return cls(
            train=_read(manifests.get("train"), TrainFacts),
            export=_read(manifests.get("export"), ExportFacts),
            calibrate=_read(manifests.get("calibrate"), CalibrationFacts),
            evaluate=_read(manifests.get("evaluate"), EvaluateFacts),
        )


def _read(manifest: dict[str, Any] | None, model: type[F]) -> F | None:
    if manifest is None:
        return None
    try:
        return facts_from_manifest(manifest, model)
    except ValidationError:  # a stage of that name publishing other facts: nothing of it to render
        return None
