"""The built-in stage graph: generate -> validate -> split."""

from __future__ import annotations

from framework.pipeline import StageDef
from framework.stages.generate import GENERATE
from framework.stages.split import SPLIT
from framework.stages.validate import VALIDATE

STAGES: list[StageDef] = [GENERATE, VALIDATE, SPLIT]
