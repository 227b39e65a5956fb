"""Benchmark LLM dispatch throughput against the loopback server, side by side in one run (run by hand, not in CI).

    .venv/bin/python bench/bench_llm.py                       # 1,000 requests, concurrency 32, 50 ms latency
    .venv/bin/python bench/bench_llm.py --requests 300 --concurrency 16 --latency 0.1
    .venv/bin/python bench/bench_llm.py --in-process-server   # server threads in this process (share its GIL)

The goal (issue): throughput at concurrency C against a server with a fixed latency L, as a ratio of the ideal
C / L requests per second; aim >= 0.8. Five paths make the same N requests, each after a warm-up:
(a) the full path with the default transport, Dispatcher + litellm + server; (e) the full path with the
``openai_compatible`` transport (framework/llm/openai_http.py), Dispatcher + aiohttp + server; (b) the same
Dispatcher and task with
``framework.llm.dispatcher.attempt`` replaced by a stub that sleeps L and returns an Answer (the dispatcher's own
scheduling cost, no HTTP); (c) a raw httpx.AsyncClient and (d) a raw aiohttp session (the transport litellm uses)
POSTing the same chat-completion JSON at the same concurrency (transport ceilings without litellm).
The server (tests/assets/llm_server.py) runs in a subprocess unless --in-process-server, so its CPU is not on
the client's GIL. CPU per request is ``time.process_time()`` over N, per process. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import httpx

import framework.llm.dispatcher as dispatcher_module
from framework.llm.client import Answer, litellm_module
from framework.llm.dispatcher import Dispatcher, DispatchSettings, TaskOutcome, TaskRecord
from framework.llm.requests import request
from framework.llm.roulette import ModelRoulette, ModelSpec

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Write 5 queries a customer might send to a banking assistant about a lost card, one per line."
SERVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from tests.assets.llm_server import Faults, LLMServer
with LLMServer(Faults(latency=float(sys.argv[2]))) as server:
    print(server.url, flush=True)
    cpu = time.process_time()
    for _ in sys.stdin:  # a line in: requests, max in flight and CPU seconds since the last line out; reset
        stats, cpu, last = server.stats, time.process_time(), cpu
        server.reset_stats()
        print(stats.requests, stats.max_in_flight, cpu - last, flush=True)
"""
NAMES = {
    "a": "(a) Dispatcher + litellm + server",
    "b": "(b) Dispatcher + stub attempt, no HTTP",
    "c": "(c) raw httpx.AsyncClient + server",
    "d": "(d) raw aiohttp.ClientSession + server",
    "e": "(e) Dispatcher + openai_compatible transport + server",
}


@dataclass
class Result:
    seconds: float
    cpu: float  # this process's CPU seconds
    errors: int
    max_in_flight: int  # client side: the dispatcher's stats, or the raw workers' count
    server: tuple[int, int, float | None] | None = None  # requests, max in flight, CPU seconds (None: in process)


class Server:
    """The loopback server in a subprocess (its own GIL) or in this process; ``snapshot()`` reads and resets stats."""

    def __init__(self, latency: float, in_process: bool) -> None:
        self.process: subprocess.Popen[str] | None = None
        if in_process:
            sys.path.insert(0, str(ROOT))
            from tests.assets.llm_server import Faults, LLMServer

            self.local = LLMServer(Faults(latency=latency)).start()
            self.url = self.local.url
        else:
            command = [sys.executable, "-c", SERVER, str(ROOT), str(latency)]
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.url = self.process.stdout.readline().strip()  # type: ignore[union-attr]

    def snapshot(self) -> tuple[int, int, float | None]:
        if self.process is None:
            stats = self.local.stats
            self.local.reset_stats()
            return stats.requests, stats.max_in_flight, None
        self.process.stdin.write("stats\n")  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]
        requests, peak, cpu = self.process.stdout.readline().split()  # type: ignore[union-attr]
        return int(requests), int(peak), float(cpu)

    def close(self) -> None:
        if self.process is None:
            self.local.stop()
        else:
            self.process.stdin.close()  # type: ignore[union-attr]  # the server exits at the end of its stdin
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def task(payload: Any) -> Any:
    r = yield request(PROMPT)
    return [r.text]


async def dispatch(url: str, n: int, concurrency: int, label: str, transport: str = "litellm") -> Result:
    spec = ModelSpec("openai/fake-a", api_key_env="BENCH_LLM_KEY", api_base=url, transport=transport)
    dispatcher = Dispatcher(ModelRoulette([spec]), DispatchSettings(concurrency=concurrency, timeout=10), [])
    records = [TaskRecord(f"{label}-{i}", spec.name, i) for i in range(n)]
    failed: list[TaskOutcome] = []
    cpu, started = time.process_time(), time.perf_counter()
    await dispatcher.run(records, task, lambda outcome: None if outcome.error is None else failed.append(outcome))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if failed:
        print(f"{label}: {len(failed)} records failed, first: {failed[0].error}", file=sys.stderr)
    return Result(seconds, cpu, len(failed), dispatcher.stats.max_in_flight)


async def stubbed(n: int, concurrency: int, latency: float, label: str) -> Result:
    async def fake_attempt(spec: ModelSpec, req: Any, timeout: float, defaults: dict[str, Any]) -> Answer:
        await asyncio.sleep(latency)
        return Answer("query one\nquery two", None, 20, 10, latency * 1000)

    with mock.patch.object(dispatcher_module, "attempt", fake_attempt):
        return await dispatch("http://127.0.0.1:9/v1", n, concurrency, label)  # never contacted


async def raw(url: str, n: int, concurrency: int, library: str) -> Result:
    """``concurrency`` workers POST the chat-completion JSON with httpx or aiohttp, no litellm."""
    headers = {"Authorization": f"Bearer {os.environ['BENCH_LLM_KEY']}"}
    body = {"model": "fake-a", "messages": [{"role": "user", "content": PROMPT}]}
    remaining, errors, in_flight, peak = iter(range(n)), 0, 0, 0
    async with contextlib.AsyncExitStack() as stack:
        if library == "httpx":
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            client = httpx.AsyncClient(limits=limits, headers=headers, timeout=10, trust_env=False)
            await stack.enter_async_context(client)

            async def post(i: int) -> bool:
                response = await client.post(f"{url}/chat/completions", json={**body, "seed": i})
                return response.status_code == 200 and bool(response.json()["choices"][0]["message"]["content"])
        else:
            connector = aiohttp.TCPConnector(limit=concurrency)
            session = aiohttp.ClientSession(connector=connector, headers=headers, trust_env=False)
            await stack.enter_async_context(session)

            async def post(i: int) -> bool:
                async with session.post(f"{url}/chat/completions", json={**body, "seed": i}) as response:
                    return response.status == 200 and bool((await response.json())["choices"][0]["message"]["content"])

        async def worker() -> None:
            nonlocal errors, in_flight, peak
            for i in remaining:  # a shared iterator: each request goes to exactly one worker
                in_flight += 1
                peak = max(peak, in_flight)
                errors += not await post(i)
                in_flight -= 1

        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Result(time.perf_counter() - started, time.process_time() - cpu, errors, peak)


async def measure(args: argparse.Namespace, server: Server) -> dict[str, Result]:
    """Warm each path up, then time it; the server's stats are read and reset around each timed run."""
    c = args.concurrency
    paths: dict[str, Callable[[int, str], Awaitable[Result]]] = {
        "a": lambda n, label: dispatch(server.url, n, c, label),
        "b": lambda n, label: stubbed(n, c, args.latency, label),
        "c": lambda n, label: raw(server.url, n, c, "httpx"),
        "d": lambda n, label: raw(server.url, n, c, "aiohttp"),
        "e": lambda n, label: dispatch(server.url, n, c, label, "openai_compatible"),
    }
    results: dict[str, Result] = {}
    for key, path in paths.items():
        await path(args.warmup, f"warmup-{key}")  # builds litellm's and the raw clients' connections
        server.snapshot()
        results[key] = await path(args.requests, key)
        results[key].server = server.snapshot() if key != "b" else None
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="requests timed per path")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05, help="server (and stub) latency in seconds")
    parser.add_argument("--warmup", type=int, default=64, help="untimed requests per path first")
    parser.add_argument("--in-process-server", action="store_true", help="serve from threads of this process")
    args = parser.parse_args()
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # never fetch litellm's cost map
    os.environ["BENCH_LLM_KEY"] = "sk-bench-dummy"
    litellm_module()  # import litellm (seconds) before any timing

    server = Server(args.latency, args.in_process_server)
    try:
        results = asyncio.run(measure(args, server))
    finally:
        server.close()

    n, ideal = args.requests, args.concurrency / args.latency
    where = "in this process (client CPU includes it)" if args.in_process_server else "in a subprocess"
    rows = [
        ("machine", f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"),
        ("setup", f"{n} requests per path, concurrency {args.concurrency}, latency {args.latency * 1000:g} ms"),
        ("server", where),
        ("ideal throughput (concurrency / latency)", f"{ideal:.0f} req/s"),
    ]
    for key, r in results.items():
        rows.append((NAMES[key], f"{n} req in {r.seconds:.2f} s = {n / r.seconds:.0f} req/s, {r.errors} errors"))
        rows.append(("    ratio to ideal", f"{n / r.seconds / ideal:.2f}"))
        peaks, cpu = f"{r.max_in_flight}", f"{1000 * r.cpu / n:.2f} ms"
        if r.server:
            peaks += f" / {r.server[1]} (server saw {r.server[0]} requests)"
            cpu += f" / {1000 * r.server[2] / n:.2f} ms" if r.server[2] is not None else ""
        rows += [("    max in flight, client / server", peaks), ("    CPU per request, client / server", cpu)]
    a, b, c, d, e = (results[key] for key in "abcde")
    ratio_a, ratio_b, ratio_e = (n / r.seconds / ideal for r in (a, b, e))
    rows.append(("client CPU per request, (a) - (c)", f"{1000 * (a.cpu - c.cpu) / n:+.2f} ms"))
    rows.append(("client CPU per request, (a) - (d)", f"{1000 * (a.cpu - d.cpu) / n:+.2f} ms (litellm above aiohttp)"))
    for key, ratio in (("a", ratio_a), ("e", ratio_e)):
        rows.append(("aim >= 0.8", f"{'met' if ratio >= 0.8 else 'not met'} for ({key}): ratio {ratio:.2f}"))
    why = f"(b) reaches {ratio_b:.2f}, so the dispatcher schedules fine; (a)'s gap is litellm's CPU per call on the "
    why += f"one asyncio thread: {1000 * a.cpu / n:.1f} ms caps it near {n / a.cpu:.0f} req/s"
    rows += [("why", why)] if ratio_b >= 0.8 > ratio_a else []
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
