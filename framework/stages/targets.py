"""The built-in targets: the ``classifier`` (generate -> validate -> split -> train -> export -> calibrate ->
evaluate -> bundle), a sequence classifier shipped as an ONNX bundle; and ``tool_calls`` (generate -> validate ->
split -> tool_export -> tool_selector -> lora_train -> tool_evaluate), validated tool-call examples exported as
chat and OpenAI fine-tuning files, an encoder classifier over the tool names (the fast selector), and a LoRA
adapter trained on them, bundled and scored beside the selector."""

from __future__ import annotations

from framework.pipeline.targets import DEFAULT_TARGET, Target, register_target

CLASSIFIER = register_target(
    Target(
        DEFAULT_TARGET,
        ("generate", "validate", "split", "train", "export", "calibrate", "evaluate", "bundle"),
        "a sequence classifier shipped as an ONNX bundle",
    )
)

TOOL_CALLS = register_target(
    Target(
        "tool_calls",
        ("generate", "validate", "split", "tool_export", "tool_selector", "lora_train", "tool_evaluate"),
        "validated tool-call examples (tools declared under tool_calls), exported as chat and OpenAI fine-tuning "
        "JSONL; a LoRA adapter trained on them, bundled and scored before and after fine-tuning",
    )
)
