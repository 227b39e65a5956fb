"""The built-in targets: the ``classifier`` (generate -> validate -> split -> train -> export -> calibrate ->
evaluate -> bundle), a sequence classifier shipped as an ONNX bundle."""

from __future__ import annotations

from framework.pipeline.targets import DEFAULT_TARGET, Target, register_target

CLASSIFIER = register_target(
    Target(
        DEFAULT_TARGET,
        ("generate", "validate", "split", "train", "export", "calibrate", "evaluate", "bundle"),
        "a sequence classifier shipped as an ONNX bundle",
    )
)
