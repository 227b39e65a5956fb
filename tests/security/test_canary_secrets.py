"""Canary secrets in the environment, an override, a URI and an ``oc.env`` reference never reach disk or stderr.

Runs the real CLI against the loopback LLM server (127.0.0.1 only): one run that succeeds, one that fails on
purpose (the server answers 401 and echoes the key), and two that are refused before any work.
"""

from __future__ import annotations

from pathlib import Path

from tests.assets.llm_server import Faults, LLMServer
from tests.conftest import ASSETS, llm_base_overrides, run_cli

RECIPE = ASSETS / "recipes" / "tiny_llm.yaml"
ENV_KEY = "sk-canaryenv-7d1e0c4b9a8f2e6d5c3b"  # the model's API key, from TEST_LLM_API_KEY
UNUSED_SECRET = "canary-unused-secret-93f1e2d4"  # a secret variable no recipe names
OVERRIDE_KEY = "sk-canaryovr-1a2b3c4d5e6f7a8b9c0d"  # pasted into an override by mistake
URI_PASSWORD = "canaryuri-pass-55aa77bb"
CANARIES = (ENV_KEY, UNUSED_SECRET, OVERRIDE_KEY, URI_PASSWORD, ENV_KEY[:12], OVERRIDE_KEY[:12])


def _everything_written(root: Path) -> list[tuple[str, str]]:
    return [(str(p), p.read_text(errors="replace")) for p in root.rglob("*") if p.is_file()]


def test_canaries_appear_nowhere_after_a_good_a_failed_and_two_refused_runs(tmp_path: Path) -> None:
    env = {"TEST_LLM_API_KEY": ENV_KEY, "CANARY_SERVICE_TOKEN": UNUSED_SECRET}
    streams = []
    with LLMServer(Faults(latency=0.005, seed=7)) as server:
        base = llm_base_overrides(server.url)
        pasted = (f"description={OVERRIDE_KEY}", f"intents.FindCallers.description='callers {OVERRIDE_KEY}'")
        args = ("run", "--until", "split", f"recipe={RECIPE}", *base, *pasted)
        good = run_cli(*args, cwd=tmp_path, env=env)
        assert good.returncode == 0, good.stderr
        server.set_faults(Faults(auth_error=True))  # the provider echoes the Authorization header in its 401
        failed = run_cli(*args, "generate.samples_per_intent=10", cwd=tmp_path, env=env)
        assert failed.returncode == 2 and "auth: 6" in failed.stderr, failed.stderr
        assert server.stats.by_outcome["auth_error"] > 0
        in_uri = f"generate.generators.llm.models.1.api_base='http://user:{URI_PASSWORD}@127.0.0.1:9/v1'"
        uri = run_cli("run", f"recipe={RECIPE}", *base[:1], in_uri, cwd=tmp_path, env=env)
        assert uri.returncode == 2 and "user:password@" in uri.stderr, uri.stderr
        reads_env = "description='${oc.env:TEST_LLM_API_KEY}'"
        oc_env = run_cli("run", f"recipe={RECIPE}", *base, reads_env, cwd=tmp_path, env=env)
        assert oc_env.returncode == 2 and "${oc.env:...}" in oc_env.stderr, oc_env.stderr
        streams = [good, failed, uri, oc_env]

    written = _everything_written(tmp_path / "outputs")
    assert any(name.endswith(".log") for name, _ in written), "the run log is among the files checked"
    assert any(name.endswith("recipe.yaml") for name, _ in written)
    assert any(name.endswith("overrides.yaml") for name, _ in written)
    for canary in CANARIES:
        leaks = [name for name, text in written if canary in text]
        leaks += [f"stream of run {i}" for i, done in enumerate(streams) if canary in done.stdout + done.stderr]
        assert not leaks, f"{canary!r} found in {leaks}"


def test_a_sweep_leaves_no_canary_in_hydras_multirun_yaml_or_any_job(tmp_path: Path) -> None:
    """Hydra's sweeper writes multirun.yaml with the overrides verbatim; intentcraft redacts it."""
    tiny = ASSETS / "recipes" / "tiny.yaml"
    args = ("run", "-m", "--until", "generate", f"recipe={tiny}", f"description={OVERRIDE_KEY}")
    done = run_cli(*args, "generate.samples_per_intent=10,12", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = _everything_written(tmp_path / "outputs")
    assert any(name.endswith("multirun.yaml") for name, _ in written)
    assert sum(name.endswith("overrides.yaml") for name, _ in written) == 2
    leaks = [name for name, text in written if OVERRIDE_KEY in text or OVERRIDE_KEY[:12] in text]
    assert not leaks and OVERRIDE_KEY not in done.stdout + done.stderr, leaks
