"""The ``llm`` generator through the real CLI against the loopback OpenAI-compatible server.

Every request goes to ``tests/assets/llm_server.py`` on 127.0.0.1; no other address is ever contacted.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from framework.redact import REDACTED
from tests.assets.llm_server import Faults, LLMServer, default_answer
from tests.conftest import ASSETS, llm_base_overrides, run_cli

RECIPE = ASSETS / "recipes" / "tiny_llm.yaml"
CANARY = "sk-canary-5f0d8a1c9e7b4d2f"
RECORDS = 24  # 3 intents x 40 rows / 5 rows per request


@pytest.fixture
def server() -> Iterator[LLMServer]:
    """A fresh loopback server per test (its stats count this test's requests only)."""
    with LLMServer(Faults(latency=0.005, seed=7)) as running:
        yield running


def llm_env(server: LLMServer, key: str = CANARY) -> dict[str, str]:
    return {"TEST_LLM_API_KEY": key}


def run(cwd: Path, server: LLMServer, *args: str, env: dict[str, str] | None = None):
    overrides = llm_base_overrides(server.url)
    return run_cli("run", f"recipe={RECIPE}", *overrides, *args, cwd=cwd, env=env or llm_env(server), timeout=240)


def generate_dir(cwd: Path) -> Path:
    (manifest,) = (cwd / "outputs" / "cache" / "generate").glob("*/manifest.json")
    return manifest.parent


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_latency(row: dict) -> dict:
    """A published row without its request's ``latency_ms``, the one field two runs of the same records may
    differ in (text, intent, model, axes, record, seed, prompt hash and attempts are the same)."""
    return {**row, "provenance": {k: v for k, v in row["provenance"].items() if k != "latency_ms"}}


def test_llm_rows_flow_through_validation_split_and_report(tmp_path: Path, server: LLMServer) -> None:
    """LLM rows carry full provenance, pass the same layers and split, and the report shows survival."""
    result = run(tmp_path, server, "--until", "split")
    assert result.returncode == 0, result.stderr
    rows = read_lines(generate_dir(tmp_path) / "rows.jsonl")
    assert len(rows) == 120 and all(row["text"].strip() for row in rows)
    provenance = rows[0]["provenance"]
    assert provenance["synthetic"] is True and provenance["plugin"] == "builtin.llm.v1"
    assert {"model", "prompt_hash", "axes", "seed", "attempts", "latency_ms"} <= set(provenance)
    assert {r["provenance"]["model"] for r in rows} == {"openai/fake-a", "openai/fake-b"}
    assert {r["provenance"]["axes"]["persona"] for r in rows} == {"new hire", "staff engineer"}
    (validate,) = (tmp_path / "outputs" / "cache" / "validate").glob("*/manifest.json")
    survival = json.loads(validate.read_text())["survival"]
    assert set(survival) == {"model", "persona", "style"}
    assert sum(v["generated"] for v in survival["model"].values()) == 120
    (report,) = (tmp_path / "outputs" / "runs").glob("tiny_llm/*/report.md")
    assert "Survival by model and axis" in report.read_text()
    assert server.stats.requests == RECORDS


def test_limit_makes_a_partial_run_that_resumes_without_asking_twice(tmp_path: Path, server: LLMServer) -> None:
    """--limit stops after N records (status PARTIAL); the next run requests only the rest."""
    partial = run(tmp_path, server, "--until", "split", "--limit", "5")
    assert partial.returncode == 0, partial.stderr
    assert "PARTIAL" in partial.stdout and "--limit 5" in partial.stdout
    assert server.stats.requests == 5
    status = run_cli("status", f"recipe={RECIPE}", *llm_base_overrides(server.url), cwd=tmp_path, env=llm_env(server))
    assert "PARTIAL" in status.stdout and "19 of 24 are left" in status.stdout
    first = {(entry.prompt_hash, entry.seed) for entry in server.stats.log}
    finished = run(tmp_path, server, "--until", "split")
    assert finished.returncode == 0, finished.stderr
    later = server.stats.log[5:]
    assert len(later) == RECORDS - 5 and not first & {(entry.prompt_hash, entry.seed) for entry in later}
    journal = read_lines(generate_dir(tmp_path) / "journal" / "llm.jsonl")
    assert sorted(line["key"] for line in journal) == sorted({line["key"] for line in journal})
    assert len(journal) == RECORDS
    clean = tmp_path / "clean"
    clean.mkdir()
    assert run(clean, server, "--until", "generate").returncode == 0
    rows = read_lines(generate_dir(tmp_path) / "rows.jsonl")
    clean_rows = read_lines(generate_dir(clean) / "rows.jsonl")
    assert len(rows) == 120 and [row["id"] for row in rows] == [row["id"] for row in clean_rows]
    for row, clean_row in zip(rows, clean_rows, strict=True):  # the same answer to the same record, in order
        assert without_latency(row) == without_latency(clean_row), row["id"]


def test_failed_records_are_error_records_with_full_provenance(tmp_path: Path, server: LLMServer) -> None:
    """With empty answers and one attempt, failures land in llm.errors.jsonl, never as empty rows."""
    server.set_faults(Faults(empty=0.4, seed=3))
    result = run(tmp_path, server, "--until", "generate", "generate.generators.llm.max_attempts=1")
    assert result.returncode == 0, result.stderr
    out = generate_dir(tmp_path)
    errors = read_lines(out / "llm.errors.jsonl")
    rows = read_lines(out / "rows.jsonl")
    assert errors and all(row["text"].strip() for row in rows)
    assert len(rows) == 5 * (RECORDS - len(errors))
    fingerprint = out.name
    for error in errors:
        assert error["status"] == "error" and error["error"]["type"] == "empty"
        assert error["recipe_fingerprint"] == fingerprint and error["time"]
        assert error["input"]["prompt"] and error["input"]["axes"]
        (step,) = error["steps"]
        assert step["request"]["messages"][-1]["content"] == error["input"]["prompt"]
        assert step["failed_attempts"][0]["kind"] == "empty"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generators"]["llm"]["failed_records"] == len(errors)
    assert any("records failed" in warning for warning in manifest["warnings"])


def test_canary_api_key_is_never_written(tmp_path: Path, server: LLMServer) -> None:
    """The key from the environment appears nowhere in outputs/, logs or saved configs, even when echoed."""
    assert run(tmp_path, server, "--until", "split").returncode == 0
    server.set_faults(Faults(auth_error=True))  # the provider echoes the key in its 401 message
    echoed = run(tmp_path, server, "--until", "generate", "generate.samples_per_intent=10")
    assert server.stats.by_outcome["auth_error"] > 0
    texts = [echoed.stdout, echoed.stderr]
    texts += [p.read_text(errors="replace") for p in (tmp_path / "outputs").rglob("*") if p.is_file()]
    assert not [t for t in texts if CANARY in t or CANARY[:12] in t]
    assert echoed.returncode == 2 and "all 6 records failed (auth: 6)" in echoed.stderr
    errors = [  # every record failed, so the stage kept them in its journal and published nothing
        e for p in (tmp_path / "outputs" / "cache" / "generate").glob("*.resume/llm.jsonl") for e in read_lines(p)
    ]
    assert errors and {e["error"]["type"] for e in errors} == {"auth"}
    assert any(REDACTED in attempt["message"] for e in errors for attempt in e["steps"][0]["failed_attempts"])


def test_a_literal_api_key_in_the_recipe_is_refused(tmp_path: Path, server: LLMServer) -> None:
    """Keys come from environment variables only; the error says how, and does not echo the key."""
    result = run(tmp_path, server, "+generate.generators.llm.models.0.api_key=sk-literal-0123456789")
    assert result.returncode == 2
    assert "generate.generators.llm.models[0].api_key" in result.stderr and "api_key_env" in result.stderr
    assert "sk-literal-0123456789" not in result.stderr + result.stdout
    assert server.stats.requests == 0


def test_an_unset_key_variable_is_one_clear_error(tmp_path: Path, server: LLMServer) -> None:
    """A model whose api_key_env is not set stops before any request, naming the key path and the fix."""
    result = run(tmp_path, server, "--until", "generate", env={"TEST_LLM_API_KEY": ""})
    assert result.returncode == 2
    assert "generate.generators.llm.models.0.api_key_env names TEST_LLM_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr and server.stats.requests == 0


def test_a_multi_step_task_runs_sequential_then_parallel_requests(tmp_path: Path, server: LLMServer) -> None:
    """The built-in ``paraphrased`` task: one request, then one rewrite per query in parallel."""
    overrides = ("+generate.generators.llm.task=paraphrased", "+generate.generators.llm.output=minimal")
    result = run(tmp_path, server, "--until", "generate", *overrides)
    assert result.returncode == 0, result.stderr
    journal = read_lines(generate_dir(tmp_path) / "journal" / "llm.jsonl")
    steps = [step["request"]["step"] for step in journal[0]["steps"]]
    assert steps == ["queries", "rewrite 0", "rewrite 1", "rewrite 2"]
    assert server.stats.requests == RECORDS * 4
    rows = read_lines(generate_dir(tmp_path) / "rows.jsonl")
    assert {tuple(sorted(row["provenance"])) for row in rows} == {("axes", "generator", "model", "plugin", "synthetic")}
    assert len(rows) == RECORDS * 5


def test_an_unknown_task_or_bad_prompt_is_a_recipe_error(tmp_path: Path, server: LLMServer) -> None:
    """Task names and prompt variables are checked before any work."""
    result = run(
        tmp_path,
        server,
        "+generate.generators.llm.task=paraphrase",
        "+generate.generators.llm.prompt='Write {{ n }} queries for {{ persona }}'",
    )
    assert result.returncode == 2
    assert "did you mean 'paraphrased'" in result.stderr
    assert "the prompt uses persona" in result.stderr
    assert server.stats.requests == 0


def test_a_dead_endpoint_is_one_clear_error_and_the_same_command_resumes_after_the_outage(
    tmp_path: Path, server: LLMServer
) -> None:
    """Nothing listening at api_base: generate fails with the cause and the fix; nothing is published. Once the
    server is back, the same command requests the failed records again and finishes."""
    url = server.url
    server.stop()
    env = llm_env(server)
    overrides = ("--until", "split", "generate.generators.llm.max_attempts=1")
    result = run(tmp_path, server, *overrides, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "all 24 records failed (connection: 24)" in result.stderr
    assert "generate.generators.llm.models" in result.stderr and "run the same command again" in result.stderr
    generate = tmp_path / "outputs" / "cache" / "generate"
    assert not list(generate.glob("*/manifest.json"))
    journal = next(generate.glob("*.resume/llm.jsonl"))
    assert len(read_lines(journal)) == 24
    status = run_cli("status", f"recipe={RECIPE}", *overrides[2:], *llm_base_overrides(url), cwd=tmp_path, env=env)
    assert "PARTIAL" in status.stdout

    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with LLMServer(Faults(seed=7), port=port) as back:
        again = run(tmp_path, back, *overrides, env=env)
        assert again.returncode == 0, again.stderr
        assert "24 records that failed for the endpoint" in again.stderr + again.stdout
        assert back.stats.requests == 24
    rows = read_lines(generate_dir(tmp_path) / "rows.jsonl")
    assert len(rows) == 120
    kept = read_lines(generate_dir(tmp_path) / "journal" / "llm.jsonl")
    assert len(kept) == 48 and all(line["status"] == "ok" for line in kept[24:])


def test_the_openai_compatible_transport_runs_the_same_recipe(tmp_path: Path, server: LLMServer) -> None:
    """transport: openai_compatible on both models gives the same rows as litellm (same seeds, same server)."""
    direct = [f"+generate.generators.llm.models.{i}.transport=openai_compatible" for i in (0, 1)]
    for name in ("direct", "litellm"):
        (tmp_path / name).mkdir()
    result = run(tmp_path / "direct", server, "--until", "generate", *direct)
    assert result.returncode == 0, result.stderr
    assert server.stats.requests == RECORDS
    via_litellm = run(tmp_path / "litellm", server, "--until", "generate")
    assert via_litellm.returncode == 0, via_litellm.stderr
    texts = [
        [row["text"] for row in read_lines(generate_dir(tmp_path / name) / "rows.jsonl")]
        for name in ("direct", "litellm")
    ]
    assert len(texts[0]) == 120 and texts[0] == texts[1]


def test_the_openai_compatible_transport_needs_an_api_base(tmp_path: Path, server: LLMServer) -> None:
    result = run(
        tmp_path,
        server,
        "+generate.generators.llm.models.0.transport=openai_compatible",
        "generate.generators.llm.models.0.api_base=null",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "generate.generators.llm.models[0]: transport" in result.stderr
    assert "set api_base to its URL" in result.stderr
    assert server.stats.requests == 0


def test_negatives_true_asks_for_off_topic_requests_for_the_out_of_scope_intent_only(tmp_path: Path) -> None:
    """``negatives: true`` through the CLI: the out-of-scope intent's requests carry the prompt built from the
    in-scope intents' descriptions, the other intents' requests do not, and the answers land as its rows."""
    prompts: list[str] = []

    def recording(model: str, messages: list[dict], seed: int | None = None) -> str:
        prompts.append(next(m["content"] for m in reversed(messages) if m.get("role") == "user"))
        return default_answer(model, messages, seed)

    with LLMServer(Faults(latency=0.005, seed=7), responder=recording) as server:
        result = run(tmp_path, server, "--until", "generate", "+generate.generators.llm.negatives=true")
    assert result.returncode == 0, result.stderr
    negative = [prompt for prompt in prompts if "none of these intents covers" in prompt]
    assert len(negative) == RECORDS // 3 and len(prompts) == RECORDS
    for prompt in negative:
        assert "- FindCallers: Who calls or uses a given function." in prompt and "- Ambiguous" not in prompt
        assert "Vague requests the router should not route." not in prompt
    rows = read_lines(generate_dir(tmp_path) / "rows.jsonl")
    assert Counter(row["intent"] for row in rows) == {"FindCallers": 40, "SymbolQuery": 40, "Ambiguous": 40}
