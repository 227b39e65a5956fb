"""ToolRouter: a valid call or a typed failure; a call that breaks a semantic rule is regenerated once with the
reason as feedback."""

from __future__ import annotations

from typing import Any

import pytest

from framework.toolcalls.decoding import Decoded
from framework.toolcalls.router import ToolRouter
from framework.toolcalls.semantics import SemanticRules, UnsafePattern, named_in
from tests.assets.tiny_causal_lm import build_tiny_causal_lm
from tests.conftest import ASSETS, load_recipe

SPEC = load_recipe(ASSETS / "recipes" / "tiny_tools.yaml").config.tool_calls
assert SPEC is not None
INVENTED = (
    '{"status":"running","thought":"Reading the named file answers.","tool_use":{"tool_name":"file_manager",'
    '"arguments":{"action":"read","path":"etc/passwd"}}}'
)
GROUNDED = INVENTED.replace("etc/passwd", "src/a.py")


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> ToolRouter:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))
    model = AutoModelForCausalLM.from_pretrained(str(base)).eval()
    return ToolRouter(model, AutoTokenizer.from_pretrained(str(base)), SPEC, max_chars=40)  # type: ignore[arg-type]


def scripted(router: ToolRouter, answers: list[str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the decoder answer ``answers`` in turn; returns the prompts it was given."""
    prompts: list[str] = []

    def generate(prompt: str, max_new_tokens: Any = None) -> Decoded:
        prompts.append(prompt)
        return Decoded(answers[len(prompts) - 1], 10, True, 0.01)

    monkeypatch.setattr(router.decoder, "generate", generate)
    return prompts


def test_an_untrained_model_gives_a_call_or_a_typed_failure(router: ToolRouter) -> None:
    for route in router.route_batch(["open src/a.py", "drop the orders database"]):
        assert route.ok != (route.failure is not None)
        assert route.failure in (None, "magic_path")  # decoding is constrained: never a schema failure
        assert 1 <= len(route.attempts) <= 2 and route.latency_ms > 0
        if route.ok:
            assert route.label in SPEC.labels  # type: ignore[union-attr]


def test_an_invented_path_is_regenerated_once_with_feedback(
    router: ToolRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = scripted(router, [INVENTED, GROUNDED], monkeypatch)
    route = router.route("open src/a.py")
    assert route.ok and route.call is not None and route.label == "file_manager"
    assert [a.rule for a in route.attempts] == ["magic_path", None]
    assert len(prompts) == 2 and "etc/passwd" not in prompts[0]
    assert "Your call was refused: file_manager.path is 'etc/passwd', which the query never names" in prompts[1]
    assert INVENTED in prompts[1]  # the refused call is in the conversation


def test_a_call_that_fails_every_attempt_is_a_typed_failure(
    router: ToolRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted(router, [INVENTED, INVENTED], monkeypatch)
    route = router.route("open src/a.py")
    assert not route.ok and route.call is None and route.failure == "magic_path" and len(route.attempts) == 2


def test_unsafe_code_is_a_semantic_failure() -> None:
    from framework.toolcalls.spec import ToolCallsSpec

    spec = ToolCallsSpec.model_validate(
        {"tools": {"run": {"description": "d", "arguments": {"code": {"type": "string"}}}}}
    )
    rules = SemanticRules(spec, {"run": ["code"]}, [UnsafePattern("rm_rf", r"\brm\s+-rf\b", "deletes files")])
    call = {
        "status": "running",
        "thought": "t",
        "tool_use": {"tool_name": "run", "arguments": {"code": "os.system('RM -rf /')"}},
    }
    assert rules.problem(call, "clean up") == ("unsafe_code", "run.code runs 'RM -rf' (rm_rf: deletes files)")
    call["tool_use"]["arguments"]["code"] = "print(1)"  # type: ignore[index]
    assert rules.problem(call, "clean up") is None


@pytest.mark.parametrize(
    ("value", "query", "named"),
    [("src/a.py", "open src/a.py", True), ("src/a.py", "open ./SRC/A.py, please", True),
     ("src/a.py", "open lib/src/a.py", False), ("src/a.py", "open src/a.pyc", False), ("", "open a", False),
     (".", "open a.", False), ("the audit log", "find the audit log code", True),
     ("audit log", "the audit logs", False)],
)  # fmt: skip
def test_named_in(value: str, query: str, named: bool) -> None:
    assert named_in(value, query) is named


def test_the_cached_system_prompt_decodes_exactly_what_a_full_prefill_does(router: ToolRouter) -> None:
    prefix = router.system_prompt_ids()
    first = router.tokenizer(router.prompt(router._turns("open src/a.py")), add_special_tokens=False)["input_ids"]
    assert router.decoder._prefix is not None and router.decoder._prefix[0] == prefix
    assert first[: len(prefix)] == prefix and len(first) > len(prefix) > 0.5 * len(first)
    queries = ["open src/a.py", "drop the orders database", "what does JSON stand for?"]
    prompts = [router.prompt(router._turns(query)) for query in queries]
    cached = [router.decoder.generate(prompt) for prompt in prompts]
    saved = router.decoder._prefix
    try:
        router.decoder._prefix = None
        full = [router.decoder.generate(prompt) for prompt in prompts]
    finally:
        router.decoder._prefix = saved
    assert [(d.text, d.tokens, d.complete) for d in cached] == [(d.text, d.tokens, d.complete) for d in full]
    again = router.decoder.generate(prompts[0])  # the kept cache is copied, never extended in place
    assert again.text == cached[0].text and router.decoder._prefix[1].get_seq_length() == len(prefix)
