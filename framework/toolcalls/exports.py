"""Training files from tool-call rows: the system prompt, chat-format JSONL rendered with a tokenizer's own chat
template, and OpenAI fine-tuning JSONL.

Chat format, one line per row::

    {"id": ..., "label": "file_manager", "messages": [system, user, assistant],
     "prompt": <the conversation up to the assistant turn, rendered>, "completion": <the assistant turn, rendered>}

``prompt + completion`` is the rendered conversation, so a trainer can put only the completion in the loss.
OpenAI format: ``{"messages": [system, user, assistant]}``, the assistant content being the call's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from framework.toolcalls.schema import ToolCallSchema
from framework.toolcalls.spec import COMPLETE, ArgumentSpec, ToolCallsSpec


def _argument_line(name: str, spec: ArgumentSpec) -> str:
    kind = f"one of {'|'.join(map(str, spec.enum))}" if spec.enum is not None else spec.type
    if spec.type == "array":
        kind = f"array of {spec.items}"
    bounds = [
        f">= {spec.minimum:g}" if spec.minimum is not None else "",
        f"<= {spec.maximum:g}" if spec.maximum is not None else "",
        f"matches {spec.pattern}" if spec.pattern else "",
        "taken from the request" if spec.from_query else "",
    ]
    extra = ", ".join(part for part in [kind, "required" if spec.required else "optional", *bounds] if part)
    return f"    - {name} ({extra})" + (f": {spec.description}" if spec.description else "")


def system_prompt(spec: ToolCallsSpec) -> str:
    """The system prompt of every exported conversation: the instructions, each tool with its arguments and rules,
    direct answers, and the routing rules."""
    lines = [spec.system_prompt.strip(), "", "Tools:"]
    for name, tool in spec.tools.items():
        lines.append(f"- {name}: {tool.description.strip()}")
        lines += [_argument_line(arg, arg_spec) for arg, arg_spec in tool.arguments.items()]
        lines += [f"    Rule: {rule.strip()}" for rule in tool.rules]
    if spec.answer is not None:
        lines += ["", f"Answer directly ({COMPLETE}): {spec.answer.description.strip()}"]
        lines += [f"    Rule: {rule.strip()}" for rule in spec.answer.rules]
    if spec.rules:
        lines += ["", "Routing rules:"]
        lines += [f"- When {rule.when.strip().rstrip('.')}: {rule.use}." for rule in spec.rules]
    return "\n".join(lines)


def messages(system: str, query: str, call_json: str) -> list[dict[str, str]]:
    """The three turns of one example."""
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": query},
        {"role": "assistant", "content": call_json},
    ]


def render_chat(tokenizer: Any, turns: list[dict[str, str]]) -> tuple[str, str]:
    """``(prompt, completion)``: the conversation rendered by the tokenizer's chat template, cut where the
    assistant turn starts. Raises ``ValueError`` when the template does not render the prompt as a prefix."""
    full = tokenizer.apply_chat_template(turns, tokenize=False)
    prompt = tokenizer.apply_chat_template(turns[:-1], tokenize=False, add_generation_prompt=True)
    if not full.startswith(prompt):
        raise ValueError(
            "the chat template renders the conversation without the assistant turn (with a generation prompt) "
            "differently from the start of the whole conversation, so the assistant turn cannot be cut out"
        )
    return prompt, full[len(prompt) :]


@dataclass
class TokenStats:
    """Token counts of the assistant turns on the recipe's tokenizer, with and without ``None`` fields."""

    examples: int = 0
    with_nulls: int = 0
    without_nulls: int = 0
    prompt: int = 0

    def add(self, tokenizer: Any, schema: ToolCallSchema, output: dict[str, Any], prompt: str) -> None:
        """Count one example."""
        call = schema.parse(output)
        full = len(tokenizer.encode(schema.to_json(call, exclude_none=False), add_special_tokens=False))
        lean = len(tokenizer.encode(schema.to_json(call), add_special_tokens=False))
        self.examples += 1
        self.with_nulls += full
        self.without_nulls += lean
        self.prompt += len(tokenizer.encode(prompt, add_special_tokens=False))

    def summary(self) -> dict[str, Any]:
        """Means per example, for the manifest and the report."""
        n = max(self.examples, 1)
        return {
            "examples": self.examples,
            "completion_tokens_mean": round(self.without_nulls / n, 2),
            "completion_tokens_with_nulls_mean": round(self.with_nulls / n, 2),
            "saved_per_example_mean": round((self.with_nulls - self.without_nulls) / n, 2),
            "saved_total": self.with_nulls - self.without_nulls,
            "prompt_tokens_mean": round(self.prompt / n, 2),
        }
