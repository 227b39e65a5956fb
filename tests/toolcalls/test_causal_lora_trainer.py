"""The causal_lora trainer on a tiny Llama: completion-only loss, an adapter that saves, reloads and generates the
same, determinism under the seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from framework.errors import StageError
from framework.plugin_api import TrainContext
from framework.plugins.trainers._lora_fit import IGNORE, _encode
from framework.plugins.trainers.causal_lora import Params, causal_lora
from framework.toolcalls.decoding import ConstrainedDecoder
from framework.toolcalls.exports import messages, render_chat, system_prompt
from framework.toolcalls.schema import ToolCallSchema
from tests.assets.tiny_causal_lm import build_tiny_causal_lm
from tests.conftest import ASSETS, load_recipe

SPEC = load_recipe(ASSETS / "recipes" / "tiny_tools.yaml").config.tool_calls
assert SPEC is not None
CALLS = [
    ("open src/a.py", '{"status":"running","thought":"The file is named.","tool_use":{"tool_name":"file_manager",'
     '"arguments":{"action":"read","path":"src/a.py"}}}'),
    ("what does CI stand for", '{"status":"complete","final_answer":"CI stands for continuous integration."}'),
]  # fmt: skip


class _Bar:
    def __call__(self, n: int = 1) -> None: ...

    def note(self, text: str) -> None: ...


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


def records(tokenizer: Any, n: int) -> list[dict[str, str]]:
    rows = []
    for i in range(n):
        query, call = CALLS[i % len(CALLS)]
        prompt, completion = render_chat(tokenizer, messages(system_prompt(SPEC), query, call))  # type: ignore[arg-type]
        rows.append({"prompt": prompt, "completion": completion})
    return rows


def train(base: Path, work: Path, **overrides: Any) -> tuple[Any, dict[str, Any], list[str]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    warnings: list[str] = []
    ctx = TrainContext(labels=SPEC.labels, work_dir=work, seed=3, task=lambda *a, **k: _Bar(), warn=warnings.append)  # type: ignore[union-attr]
    settings: dict[str, Any] = {"rank": 4, "alpha": 8, "epochs": 3, "batch_size": 2, "lr": 5e-3, "max_length": 2048}
    params = Params(model=str(base), **(settings | overrides))
    result = causal_lora(records(tokenizer, 8), records(tokenizer, 2), params, ctx)
    return result, result.metrics, warnings


def test_only_the_completion_is_in_the_loss(base: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    row = records(tokenizer, 1)[0]
    data = _encode(tokenizer, [row], 4096, print, "train")
    prompt_tokens = len(tokenizer(row["prompt"], add_special_tokens=False)["input_ids"])
    assert data.labels[0][:prompt_tokens] == [IGNORE] * prompt_tokens
    assert (
        data.labels[0][prompt_tokens:] == data.ids[0][prompt_tokens:] and IGNORE not in data.labels[0][prompt_tokens:]
    )
    assert tokenizer.decode(data.ids[0][prompt_tokens:]) == row["completion"]


def test_lora_trains_saves_and_reloads_to_identical_generations(base: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result, metrics, _ = train(base, tmp_path / "a")
    history = metrics["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in result.model_dir.iterdir()}
    assert 0 < metrics["trainable_parameters"] < metrics["parameters"]
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    schema = ToolCallSchema(SPEC)  # type: ignore[arg-type]
    prompt = records(tokenizer, 1)[0]["prompt"]
    texts = []
    for _ in range(2):  # the same adapter, loaded twice from disk
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), str(result.model_dir)).eval()
        texts.append(ConstrainedDecoder(model, tokenizer, schema, max_chars=40).generate(prompt).text)
    assert texts[0] == texts[1]
    schema.parse(texts[0])
    plain = AutoModelForCausalLM.from_pretrained(str(base)).eval()
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, plain(ids).logits)  # the adapter changed the model


def test_training_is_deterministic_under_the_seed(base: Path, tmp_path: Path) -> None:
    first, metrics_a, _ = train(base, tmp_path / "a", epochs=1)
    second, metrics_b, _ = train(base, tmp_path / "b", epochs=1)
    assert metrics_a["history"][0]["train_loss"] == metrics_b["history"][0]["train_loss"]
    a = (first.model_dir / "adapter_model.safetensors").read_bytes()
    assert a == (second.model_dir / "adapter_model.safetensors").read_bytes()


def test_when_no_example_fits_max_length_the_error_says_which_key_to_raise(base: Path, tmp_path: Path) -> None:
    with pytest.raises(StageError, match=r"no train example fits in trainer\.max_length=40 tokens; raise it"):
        train(base, tmp_path / "a", max_length=40)


def test_rows_without_chat_records_are_refused(base: Path, tmp_path: Path) -> None:
    ctx = TrainContext(labels=["a", "b"], work_dir=tmp_path, seed=0, task=lambda *a, **k: _Bar())
    with pytest.raises(StageError, match="trains on chat records"):
        causal_lora([{"text": "x", "intent": "a"}], [], Params(model=str(base)), ctx)


def test_qlora_is_chosen_only_where_cuda_and_bitsandbytes_are() -> None:
    from framework.plugins.trainers._lora_fit import choose_quantization

    assert choose_quantization("auto", "cpu", True) == ("none", None)  # plain LoRA on the CPU
    assert choose_quantization("auto", "cuda", True) == ("nf4", None)
    mode, warning = choose_quantization("auto", "cuda", False)
    assert mode == "none" and warning is not None and "intentcraft[gpu]" in warning
    assert choose_quantization("none", "cuda", True) == ("none", None)
    with pytest.raises(StageError, match=r"trainer\.quantization=nf4 \(QLoRA\) needs a CUDA device"):
        choose_quantization("nf4", "cpu", True)
    with pytest.raises(StageError, match="needs bitsandbytes, which is not installed"):
        choose_quantization("nf4", "cuda", False)
