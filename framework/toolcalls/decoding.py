"""Decoding constrained to a recipe's tool-call union, with llguidance: every answer parses.

At each step llguidance's matcher computes which tokens may follow under the union's JSON schema, the others'
logits are masked, and the chosen token advances the matcher. Strings without a ``maxLength`` get one
(``max_chars``) and arrays a ``maxItems``, so the calls a model can write have bounded strings
(:func:`token_budget`); numbers the grammar lets run long, so the budget is also capped by the model's context
length, and a call cut off there is reported as not complete (the router's ``truncated``). Greedy decoding
with the model's KV cache; the KV cache of the system prompt, which every query's prompt starts with, is computed
once (:meth:`ConstrainedDecoder.cache_prefix`) and copied for each query.
"""

from __future__ import annotations

import copy
import functools
import json
import time
from dataclasses import dataclass
from typing import Any

from framework.toolcalls.schema import ToolCallSchema

DEFAULT_MAX_CHARS = 400
"""The longest a string without its own ``max_length`` may be in a decoded call (a thought, an answer, code)."""
DEFAULT_MAX_ITEMS = 16
_SCALAR_CHARS = {"integer": 24, "number": 32, "boolean": 5, "null": 4}


def bounded_schema(schema: dict[str, Any], max_chars: int = DEFAULT_MAX_CHARS) -> dict[str, Any]:
    """``schema`` with ``maxLength`` on every free string and ``maxItems`` on every array that lack one."""
    bounded = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "string" and "enum" not in node and "const" not in node:
                node.setdefault("maxLength", max_chars)
            if node.get("type") == "array":
                node.setdefault("maxItems", DEFAULT_MAX_ITEMS)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(bounded)
    return bounded


def _chars(node: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> int:
    """An upper bound on the characters of a compact JSON value that ``node`` allows."""
    if depth > 32:
        raise ValueError("the schema nests deeper than 32 levels")
    if "$ref" in node:
        return _chars(defs[node["$ref"].rsplit("/", 1)[-1]], defs, depth + 1)
    for key in ("oneOf", "anyOf"):
        if key in node:
            return max(_chars(option, defs, depth + 1) for option in node[key])
    if "const" in node or "enum" in node:
        values = [node["const"]] if "const" in node else node["enum"]
        return max(len(json.dumps(value, ensure_ascii=False)) for value in values)
    kind = node.get("type")
    if kind == "string":
        return 2 + 6 * int(node["maxLength"])  # an escaped character is at most six (\uXXXX)
    if kind == "array":
        return 2 + int(node["maxItems"]) * (1 + _chars(node.get("items", {"type": "null"}), defs, depth + 1))
    if kind == "object":
        properties = node.get("properties", {})
        return 2 + sum(len(json.dumps(k)) + 2 + _chars(v, defs, depth + 1) for k, v in properties.items())
    return _SCALAR_CHARS.get(str(kind), 32)


def token_budget(schema: dict[str, Any]) -> int:
    """Tokens enough for the longest call ``schema`` allows: a byte-level tokenizer's token is at least one byte,
    and a character at most four bytes; plus one for the end-of-turn token."""
    return 4 * _chars(schema, schema.get("$defs", {})) + 1


@functools.cache
def cache_argument() -> str:
    """What this transformers calls the KV cache in a forward pass and its output (``cache`` from 5.x on)."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


@dataclass
class Decoded:
    """One constrained generation: the text, the tokens it took, whether the grammar accepted it, and time."""

    text: str
    tokens: int
    complete: bool
    seconds: float


class ConstrainedDecoder:
    """Greedy decoding of one call per prompt, masked to the union's JSON schema."""

    def __init__(self, model: Any, tokenizer: Any, schema: ToolCallSchema, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        import llguidance
        import llguidance.hf

        self.model, self.tokenizer = model, tokenizer
        self.json_schema = bounded_schema(schema.json_schema, max_chars)
        self.ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer)
        self.grammar = llguidance.LLMatcher.grammar_from_json_schema(
            self.json_schema, defaults={"whitespace_flexible": False}
        )
        failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(self.grammar, self.ll_tokenizer)
        if failed:
            raise ValueError(f"llguidance refuses the tool-call schema: {'; '.join(messages)}")
        self.budget = token_budget(self.json_schema)
        self._prefix: tuple[list[int], Any] | None = None

    def cache_prefix(self, ids: list[int]) -> None:
        """Keep the KV cache of ``ids``; a prompt that starts with them (and goes on) starts from a copy of it."""
        import torch

        self._prefix = None
        if not ids:
            return
        with torch.no_grad():
            output = self.model(torch.tensor([ids]), use_cache=True)
        self._prefix = (list(ids), getattr(output, cache_argument()))

    def _start(self, ids: Any) -> tuple[Any, Any]:
        """``(cache, the tokens still to run)`` for a prompt's token ids."""
        if self._prefix is not None:
            prefix, cache = self._prefix
            if ids.shape[1] > len(prefix) and ids[0, : len(prefix)].tolist() == prefix:
                return copy.deepcopy(cache), ids[:, len(prefix) :]
        return None, ids

    def generate(self, prompt: str, max_new_tokens: int | None = None) -> Decoded:
        """The call for a rendered prompt (ending where the assistant turn starts)."""
        import llguidance
        import llguidance.torch
        import torch

        started = time.perf_counter()
        matcher = llguidance.LLMatcher(self.ll_tokenizer, self.grammar)
        bitmask = llguidance.torch.allocate_token_bitmask(1, self.ll_tokenizer.vocab_size)
        ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        eos = self.tokenizer.eos_token_id
        produced: list[int] = []
        past, current = self._start(ids)
        context = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        limit = max_new_tokens or self.budget
        if isinstance(context, int):
            limit = max(1, min(limit, context - ids.shape[1]))
        with torch.no_grad():
            for _ in range(limit):
                output = self.model(current, **{cache_argument(): past}, use_cache=True)
                past = getattr(output, cache_argument())
                logits = output.logits[:, -1, :].float()
                llguidance.torch.fill_next_token_bitmask(matcher, bitmask, 0)
                vocab = logits.shape[-1]
                if vocab > self.ll_tokenizer.vocab_size:  # padded embedding rows are never tokens
                    logits[:, self.ll_tokenizer.vocab_size :] = float("-inf")
                llguidance.torch.apply_token_bitmask_inplace(logits[:, : self.ll_tokenizer.vocab_size], bitmask)
                token = int(torch.argmax(logits, dim=-1))
                if not matcher.consume_token(token) or token == eos:
                    break
                produced.append(token)
                if matcher.is_stopped():  # the grammar allows nothing more: the call is closed
                    break
                current = torch.tensor([[token]], device=ids.device)
        text = self.tokenizer.decode(produced, skip_special_tokens=True)
        complete = not matcher.is_error() and (matcher.is_accepting() or matcher.is_stopped())
        return Decoded(text, len(produced), complete, time.perf_counter() - started)
