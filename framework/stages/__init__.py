"""The built-in stage graph: generate -> validate -> split -> train -> export -> calibrate -> evaluate -> bundle."""

from __future__ import annotations

from framework.pipeline import StageDef
from framework.stages.bundle import BUNDLE
from framework.stages.calibrate import CALIBRATE
from framework.stages.evaluate import EVALUATE
from framework.stages.export import EXPORT
from framework.stages.generate import GENERATE
from framework.stages.split import SPLIT
from framework.stages.train import TRAIN
from framework.stages.validate import VALIDATE

STAGES: list[StageDef] = [GENERATE, VALIDATE, SPLIT, TRAIN, EXPORT, CALIBRATE, EVALUATE, BUNDLE]
