"""LoRA on SmolLM2-135M-Instruct for the agent_router recipe: training speed and memory, and routing latency.

    python bench/bench_tool_lora.py speed   [--examples 64] [--batch-size 4] [--steps 6]
    python bench/bench_tool_lora.py latency [--queries 12] [--max-chars 200]
    python bench/bench_tool_lora.py quality [OVERRIDE ...]    e.g. trainer.epochs=1

``speed`` times the same batches of the recipe's train chat records (tool_export) three ways, each in its own
process so that peak resident memory is its own: a plain peft + torch loop (the model's own loss on every
position), intentcraft's loop without the shared prefix, and intentcraft's loop with it (the system prompt run
once per batch). Tokens/s counts every example's tokens in all three, so the figures compare.

``latency`` routes the test split's queries with the untrained base model (same prompt and constrained
decoding as the bundle), once with the system prompt's KV cache kept and once prefilling every prompt in full,
and checks that both decode the same text; and once more without the grammar (plain greedy decoding, same
cache), to show what constraining costs and how often the untrained model's free answer is valid JSON.

``quality`` runs the whole recipe (with the overrides) as ``intentcraft run`` does, LoRA training included, and
prints the tool_evaluate stage's scores on the test split before (base model, zero-shot, same prompt and
decoding) and after LoRA, with the training's tokens/s, time and peak memory.

Runs from the repository root; builds the recipe up to tool_export under ``outputs/`` (cached).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _pipeline import build

from framework.toolcalls.decoding import cache_argument

OUTPUTS = Path("outputs")
MODES = ("peft-loop", "intentcraft-full", "intentcraft-shared")


def records(split: str) -> list[dict[str, Any]]:
    """The agent_router recipe's chat records of ``split`` (built up to tool_export, cached)."""
    dirs, _ = build("agent_router", OUTPUTS, indent="  ", until="tool_export")
    path = dirs["tool_export"] / "chat" / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _load_lora() -> tuple[Any, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from framework.models import SMOLLM2
    from framework.plugins.trainers._lora_fit import base_checkpoint
    from framework.plugins.trainers.causal_lora import Params

    defaults = Params()
    source, _ = base_checkpoint(SMOLLM2, OUTPUTS / "cache" / "models")
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    config = LoraConfig(
        task_type="CAUSAL_LM", r=defaults.rank, lora_alpha=defaults.alpha, lora_dropout=defaults.dropout,
        target_modules=defaults.target_modules,
    )  # fmt: skip
    return tokenizer, get_peft_model(model, config)


def speed_one(mode: str, examples: int, batch_size: int, steps: int) -> dict[str, Any]:
    """One mode's tokens/s over ``steps`` optimizer steps (after one untimed step) and its peak memory."""
    import torch

    from framework.plugins.trainers._lora_fit import _batch, _encode
    from framework.plugins.trainers._shared_prefix import causal_loss_sum
    from framework.toolcalls.prefix import shared_prefix_length

    torch.manual_seed(0)
    tokenizer, model = _load_lora()
    data = _encode(tokenizer, records("train")[:examples], 4096, print, "train")
    batches = [list(range(i, i + batch_size)) for i in range(0, (steps + 1) * batch_size, batch_size)]
    if batches[-1][-1] >= len(data):
        raise SystemExit(f"--examples {examples} is too few for {steps + 1} batches of {batch_size}")
    shared = shared_prefix_length(data.ids, data.prompt_lengths)
    prefix = torch.tensor([data.ids[0][:shared]]) if mode == "intentcraft-shared" else None
    rest = data.without_prefix(shared) if prefix is not None else data
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    model.train()
    tokens, losses, started = 0, [], 0.0
    for step, indices in enumerate(batches):
        if step == 1:
            started = time.perf_counter()
        if mode == "peft-loop":
            batch = _batch(data, indices, tokenizer.pad_token_id or 0)
            loss = model(**batch).loss
        else:
            summed, count = causal_loss_sum(model, _batch(rest, indices, tokenizer.pad_token_id or 0), prefix)
            loss = summed / count
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(round(float(loss.detach()), 5))
        if step >= 1:
            tokens += sum(len(data.ids[i]) for i in indices)
    seconds = time.perf_counter() - started
    return {
        "mode": mode,
        "tokens_per_second": round(tokens / seconds, 1),
        "seconds_per_step": round(seconds / steps, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "shared_prefix_tokens": shared if prefix is not None else 0,
        "tokens_per_example": round(statistics.mean(len(data.ids[i]) for b in batches for i in b), 1),
        "losses": losses,
        "threads": torch.get_num_threads(),
    }


def speed(args: argparse.Namespace) -> None:
    """Every mode in its own process, then one table with the ratios to the plain peft loop."""
    records("train")  # build once before the timed processes
    results = []
    for mode in MODES:
        command = [sys.executable, __file__, "_speed", mode, str(args.examples), str(args.batch_size), str(args.steps)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(f"  {mode}: done", flush=True)
    base = results[0]
    print(f"\nLoRA training, SmolLM2-135M-Instruct, batches of {args.batch_size}, {args.steps} timed steps, "
          f"{results[0]['tokens_per_example']} tokens per example, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'mode':<20} {'tokens/s':>9} {'x peft':>7} {'s/step':>7} {'peak RSS MB':>12} {'x peft':>7}  losses")
    for r in results:
        speedup, memory = r["tokens_per_second"] / base["tokens_per_second"], r["peak_rss_mb"] / base["peak_rss_mb"]
        print(
            f"{r['mode']:<20} {r['tokens_per_second']:>9,.1f} {speedup:>7.2f} {r['seconds_per_step']:>7.2f} "
            f"{r['peak_rss_mb']:>12,.0f} {memory:>7.2f}  {r['losses']}"
        )
    if results[-1]["shared_prefix_tokens"]:
        print(f"shared prefix: {results[-1]['shared_prefix_tokens']} tokens")


FREE_TOKENS = 160
"""Tokens an unconstrained answer may take (a recipe call is about 56): without the grammar nothing else ends it."""


def _free_greedy(decoder: Any, prompt: str) -> tuple[str, float]:
    """Greedy decoding without the grammar, from the same kept cache, up to ``FREE_TOKENS``."""
    import torch

    started = time.perf_counter()
    ids = decoder.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    past, current = decoder._start(ids)
    key, produced = cache_argument(), []
    with torch.no_grad():
        for _ in range(FREE_TOKENS):
            output = decoder.model(current, **{key: past}, use_cache=True)
            past = getattr(output, key)
            token = int(torch.argmax(output.logits[:, -1, :], dim=-1))
            if token == decoder.tokenizer.eos_token_id:
                break
            produced.append(token)
            current = torch.tensor([[token]])
    return decoder.tokenizer.decode(produced, skip_special_tokens=True), (time.perf_counter() - started) * 1000


def latency(args: argparse.Namespace) -> None:
    """p50/p95 of a routed query with the system prompt's KV cache kept and without it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from framework.models import SMOLLM2
    from framework.plugins.trainers._lora_fit import base_checkpoint
    from framework.toolcalls.router import ToolRouter

    _, checked = build("agent_router", OUTPUTS, indent="  ", until="tool_export")
    queries = [row["messages"][1]["content"] for row in records("test")][: args.queries]
    source, _ = base_checkpoint(SMOLLM2, OUTPUTS / "cache" / "models")
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    spec = checked.config.tool_calls
    router = ToolRouter(model, AutoTokenizer.from_pretrained(source), spec, max_retries=0, max_chars=args.max_chars)
    prefix = router.decoder._prefix
    router.route(queries[0])  # warm-up
    timings: dict[str, list[float]] = {}
    texts: dict[str, list[str]] = {}
    for name, kept in (("system prompt cached", prefix), ("full prefill", None)):
        router.decoder._prefix = kept
        routes = [router.route(query) for query in queries]
        print(f"  {name}: done", flush=True)
        timings[name] = [route.latency_ms for route in routes]
        texts[name] = [route.attempts[-1].text for route in routes]
    same = sum(a == b for a, b in zip(*texts.values(), strict=True))
    router.decoder._prefix = prefix
    free = [_free_greedy(router.decoder, router.prompt(router._turns(query))) for query in queries]
    timings["no grammar (cached)"] = [ms for _, ms in free]
    valid = sum(_parses(router, text) for text, _ in free)
    n_prefix = len(prefix[0]) if prefix else 0
    print(f"\nToolRouter latency per query, untrained SmolLM2-135M-Instruct, {len(queries)} test queries, "
          f"{torch.get_num_threads()} threads, system prompt {n_prefix} tokens")  # fmt: skip
    base = statistics.median(timings["full prefill"])
    for name, values in timings.items():
        p50, p95 = statistics.median(values), sorted(values)[int(0.95 * (len(values) - 1))]
        print(f"{name:<22} p50 {p50:>8.1f} ms   p95 {p95:>8.1f} ms   x full prefill {p50 / base:.2f}")
    print(f"same decoded text with and without the kept cache: {same} of {len(queries)}")
    print(f"without the grammar, answers that parse into the recipe's union: {valid} of {len(queries)}")


def _parses(router: Any, text: str) -> bool:
    try:
        router.schema.parse(text)
    except ValueError:
        return False
    return True


def quality(args: argparse.Namespace) -> None:
    """The whole recipe with LoRA, then the tool_evaluate scores before and after, and the training figures."""
    from framework.toolcalls.evaluation import SCORE_ROWS

    started = time.perf_counter()
    dirs, _ = build("agent_router", OUTPUTS, indent="  ", overrides=tuple(args.overrides))
    evaluation = json.loads((dirs["tool_evaluate"] / "bundle" / "evaluation.json").read_text())
    training = json.loads((dirs["lora_train"] / "training.json").read_text())
    before, after = evaluation["before"], evaluation["after"]
    print(f"\nagent_router {' '.join(args.overrides) or '(recipe as shipped)'}: {after['rows']} test rows "
          f"({evaluation['evidence']}), {time.perf_counter() - started:.0f} s in this call")  # fmt: skip
    print(f"{'metric':<32} {'base, zero-shot':>16} {'after LoRA':>12}")
    for label, key in SCORE_ROWS:
        cells = [("-" if m is None or m.get(key) is None else m[key]) for m in (before, after)]
        shown = [c if isinstance(c, str) or key.startswith("latency") else f"{100 * c:.1f}%" for c in cells]
        print(f"{label:<32} {shown[0]:>16} {shown[1]:>12}")
    print(f"training: {training['train_rows']} examples, {training['epochs_run']} epochs, {training['seconds']:.0f} s, "
          f"{[h['tokens_per_second'] for h in training['history']]} tokens/s per epoch, "
          f"peak RSS {training['peak_memory_mb']:,.0f} MB, "
          f"shared prefix {training.get('shared_prefix_tokens')} tokens, "
          f"eval loss per epoch {[h['eval_loss'] for h in training['history']]}")  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_speed":
        mode, examples, batch_size, steps = sys.argv[2], *map(int, sys.argv[3:6])
        print(json.dumps(speed_one(mode, examples, batch_size, steps)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--examples", type=int, default=64)
    s.add_argument("--batch-size", type=int, default=4)
    s.add_argument("--steps", type=int, default=6)
    lat = sub.add_parser("latency")
    lat.add_argument("--queries", type=int, default=12)
    lat.add_argument("--max-chars", type=int, default=200, help="longest free string in a decoded call")
    q = sub.add_parser("quality")
    q.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    {"speed": speed, "latency": latency, "quality": quality}[args.command](args)


if __name__ == "__main__":
    main()
