"""``intentcraft run`` with its output piped (no terminal): stage lines, periodic progress lines, the run log."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from framework.io import read_json
from framework.pipeline.progress import INTERVAL_ENV
from framework.pipeline.targets import target_stages
from tests.conftest import TINY, run_cli, tiny_model_overrides

STAGES = target_stages("classifier")

STAGE_NAMES = [stage.name for stage in STAGES]

RECORD = re.compile(r"^\[[\d\- :,]+\]\[(?P<logger>[^\]]+)\]\[(?P<level>[A-Z]+)\] - (?P<message>.*)$")
TRAIN_LINE = re.compile(
    r"^train: epoch \d/3 · \d+/(?P<total>\d+) steps \(\d+%\) · [\d.]+ steps/s · elapsed [\dms. ]+ · "
    r"ETA [\dms. ]+ · loss \d+\.\d{4} · \d+ ex/s$"
)
ENDED = r"\((?P<fingerprint>[0-9a-f]{12})\) in \d+\.\d s"


def run_log(cwd: Path) -> tuple[Path, list[tuple[str, str, str]], str]:
    """The newest run's directory, its log's records (logger, level, first line) and the whole log text."""
    run_dir = sorted((cwd / "outputs" / "runs" / "tiny").iterdir())[-1]
    text = (run_dir / "tiny.log").read_text(encoding="utf-8")
    records = [(m["logger"], m["level"], m["message"]) for line in text.splitlines() if (m := RECORD.match(line))]
    return run_dir, records, text


def manifest(cwd: Path, stage: str) -> dict:
    return read_json(next((cwd / "outputs" / "cache" / stage).iterdir()) / "manifest.json")


def check_piped_output(done: subprocess.CompletedProcess, cwd: Path) -> None:
    """A start line (stderr) and an end line (stdout) per stage, and periodic lines for training, export, evaluate."""
    err, out = done.stderr.splitlines(), done.stdout.splitlines()
    for stage in STAGE_NAMES:
        assert f"{stage}: started (missing: never run for this recipe)" in err, (stage, done.stderr)
        assert any(re.fullmatch(rf"{stage}: ran {ENDED}", line) for line in out), (stage, done.stdout)
    training = [m for line in err if (m := TRAIN_LINE.match(line))]
    steps = -(-manifest(cwd, "train")["train"]["train_rows"] // 16)  # batch_size 16
    assert training and {m["total"] for m in training} == {str(steps)}, done.stderr
    assert any(
        line.startswith("export · 5/6 steps (83%) · ") and line.endswith(" · INT8 quantization done") for line in err
    )
    assert any(re.match(r"evaluate: test split · \d+/\d+ rows \(100%\) · [\d.]+ rows/s · ", line) for line in err)
    assert "Quantization parameters" not in done.stdout + done.stderr


def check_run_log(cwd: Path) -> None:
    """Stage boundaries in order, progress lines, no third-party INFO, the final metrics and every warning."""
    run_dir, records, text = run_log(cwd)
    messages = [message for _, _, message in records]
    for stage in STAGE_NAMES:
        started = messages.index(f"{stage}: started (missing: never run for this recipe)")
        ended = next(i for i, m in enumerate(messages) if re.fullmatch(rf"{stage}: ran {ENDED}", m))
        assert started < ended, stage
    assert any(TRAIN_LINE.match(message) for message in messages), "periodic training lines reach the run log"
    third_party = [record for record in records if record[1] == "INFO" and record[0] != "intentcraft"]
    assert not third_party, third_party[:5]
    assert "fusion_base" not in text and "Quantization parameters" not in text and "onnx_model" not in text
    summary = text[text.index("run summary:") :]
    evaluation = manifest(cwd, "evaluate")["evaluation"]["all"]
    assert re.search(rf"│ accuracy \(test split, synthetic rows\) +│ +{100 * evaluation['accuracy']:.2f}% │", summary)
    assert re.search(rf"│ macro-F1 +│ +{100 * evaluation['macro_f1']:.2f}% │", summary)
    assert f"report: {run_dir / 'report.md'}" in summary and "bundle: " in summary
    flat = " ".join(summary.split())
    for stage in STAGE_NAMES:
        for warning in manifest(cwd, stage).get("warnings", []):
            assert " ".join(warning.split()) in flat, f"warning lost from the run log: {warning}"


def test_piped_run_prints_stage_and_progress_lines_and_a_clean_run_log(tmp_path: Path, tiny_encoder: Path) -> None:
    overrides = (f"recipe={TINY}", *tiny_model_overrides(tiny_encoder), "calibrate.max_ece=null")
    env = {INTERVAL_ENV: "0"}  # a line for every advance: the tiny run is over in seconds
    done = run_cli("run", *overrides, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    check_piped_output(done, tmp_path)
    check_run_log(tmp_path)

    again = run_cli("run", *overrides, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "started" not in again.stderr, again.stderr
    for stage in STAGE_NAMES:
        computed = rf"{stage}: cached \([0-9a-f]{{12}}\), computed by an earlier run in \d+\.\d s"
        assert any(re.fullmatch(computed, line) for line in again.stdout.splitlines()), (stage, again.stdout)
    _, records, text = run_log(tmp_path)
    assert any(message.startswith("train: cached (") for _, _, message in records)
    assert "Nothing to do: all 8 stages of tiny are current" in text
