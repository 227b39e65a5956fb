"""The built-in stage kinds and the ``classifier`` target: generate -> validate -> split -> train -> export ->
calibrate -> evaluate -> bundle."""

from __future__ import annotations

from framework.pipeline.runner import StageDef
from framework.pipeline.targets import DEFAULT_TARGET, Target, register_stage, register_target
from framework.stages.bundle import BUNDLE
from framework.stages.calibrate import CALIBRATE
from framework.stages.evaluate import EVALUATE
from framework.stages.export import EXPORT
from framework.stages.generate import GENERATE
from framework.stages.split import SPLIT
from framework.stages.train import TRAIN
from framework.stages.validate import VALIDATE

STAGES: list[StageDef] = [
    register_stage(s) for s in (GENERATE, VALIDATE, SPLIT, TRAIN, EXPORT, CALIBRATE, EVALUATE, BUNDLE)
]
"""The classifier target's stages, in run order."""

CLASSIFIER = register_target(
    Target(DEFAULT_TARGET, tuple(stage.name for stage in STAGES), "a sequence classifier shipped as an ONNX bundle")
)
