"""``intentcraft predict`` and ``intentcraft verify`` through the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import assert_route_row
from tests.runtime.tiny_bundle import FALLBACK, LABELS, BundleFactory, default_calibration, keyword_model

FIELDS = {
    "text",
    "intent",
    "predicted",
    "confidence",
    "decision",
    "reason",
    "runners_up",
    "error",
    "ood_score",
    "abstained_by",
}


def cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m framework ARGS`` with ``stdin`` piped in."""
    return subprocess.run(
        [sys.executable, "-m", "framework", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_predict_one_text_prints_intent_and_decision(make_bundle: BundleFactory, tmp_path: Path) -> None:
    """A text with the keyword is accepted as FindCallers; one without it abstains below SymbolQuery's threshold."""
    model = keyword_model(tmp_path / "keyword.onnx", "calls", "FindCallers", bias=[0.0, 0.0, 1.0, 0.0])
    thresholds = {"FindCallers": 0.5, "TextSearch": 0.5, "SymbolQuery": 0.5}
    bundle = make_bundle(model=model, calibration=default_calibration(thresholds=thresholds))
    accepted = cli("predict", str(bundle), "who calls authenticate_user", cwd=tmp_path)
    assert accepted.returncode == 0, accepted.stderr
    assert summary(accepted.stdout) == {
        "text": "who calls authenticate_user",
        "intent": "FindCallers",
        "decision": "accept",
        "predicted": "FindCallers (calibrated confidence 1.000)",
        "runners-up": "SymbolQuery 0.000, TextSearch 0.000",
    }
    help_probabilities = np.exp(np.array([0.0, 0.0, 1.0, 0.0]) / 1.5)  # logits = bias without the keyword, T = 1.5
    help_probabilities /= help_probabilities.sum()
    confidence = help_probabilities[2]
    abstained = cli("predict", str(bundle), "help", cwd=tmp_path)
    assert abstained.returncode == 0, abstained.stderr
    assert summary(abstained.stdout) == {
        "text": "help",
        "intent": FALLBACK,
        "decision": f"abstain to the fallback intent {FALLBACK}",
        "reason": f"below the threshold of SymbolQuery ({confidence:.4f} < 0.5000)",
        "predicted": f"SymbolQuery (calibrated confidence {confidence:.3f})",
        "runners-up": f"FindCallers {help_probabilities[0]:.3f}, TextSearch {help_probabilities[1]:.3f}",
    }
    empty = cli("predict", str(bundle), "   ", cwd=tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert summary(empty.stdout) == {
        "text": "",
        "intent": FALLBACK,
        "decision": f"abstain to the fallback intent {FALLBACK}",
        "reason": "empty text",
    }


def summary(stdout: str) -> dict[str, str]:
    """The rows of ``predict``'s one-text summary: the first word of each line, then the rest."""
    rows = [line.strip().split(maxsplit=1) for line in stdout.splitlines() if line.strip()]
    return {row[0]: row[1] if len(row) > 1 else "" for row in rows}


def test_predict_reads_stdin_and_writes_json_lines(bundle: Path, tmp_path: Path) -> None:
    texts = ["who calls authenticate_user", "", "help", "grep for TODO"]
    done = cli("predict", str(bundle), "--top-k", "2", cwd=tmp_path, stdin="\n".join(texts) + "\n")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["text"] for row in rows] == texts
    assert all(set(row) == FIELDS for row in rows)
    assert rows[1]["reason"] == "empty text" and rows[1]["intent"] == FALLBACK
    from framework.runtime import Router

    for row, result in zip(rows, Router.load(bundle).predict(texts, top_k=2), strict=True):
        assert_route_row(row, result)  # each line is what the Router gives for that text
    assert len(rows[0]["runners_up"]) == 1
    single = cli("predict", str(bundle), "help", "--jsonl", "--top-k", "2", cwd=tmp_path)
    assert json.loads(single.stdout) == rows[2]
    dash = cli("predict", str(bundle), "-", "--top-k", "2", cwd=tmp_path, stdin="\n".join(texts) + "\n")
    assert [json.loads(line) for line in dash.stdout.splitlines()] == rows, "TEXT '-' reads stdin, as --input - does"


def test_cli_imports_no_runtime_until_a_runtime_verb_runs(tmp_path: Path) -> None:
    script = "import sys, framework.cli.commands; sys.exit('onnxruntime' in sys.modules or 'tokenizers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=False).returncode == 0


def test_predict_input_file_to_output_file(bundle: Path, tmp_path: Path) -> None:
    queries = tmp_path / "queries.txt"
    queries.write_bytes(b"who calls x\r\nbad \xff bytes\nlast line without newline")
    output = tmp_path / "out" / "routes.jsonl"
    done = cli("predict", str(bundle), "--input", str(queries), "--output", str(output), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and "wrote 3 results" in done.stderr
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [row["text"] for row in rows] == ["who calls x", "bad \ufffd bytes", "last line without newline"]
    assert [p.name for p in output.parent.iterdir()] == ["routes.jsonl"], "no temporary file is left"
    missing = cli("predict", str(bundle), "--input", str(tmp_path / "nope.txt"), cwd=tmp_path)
    assert missing.returncode == 2 and "cannot read --input" in missing.stderr and "Traceback" not in missing.stderr


def test_verify_ok_then_tampered_exits_2_with_one_paragraph(bundle: Path, tmp_path: Path) -> None:
    done = cli("verify", str(bundle), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK ") and f"{len(LABELS)} labels" in done.stdout
    assert f"fallback intent: {FALLBACK}" in done.stdout and "temperature 1.5" in done.stdout
    with (bundle / "model.onnx").open("ab") as handle:
        handle.write(b"tampered")
    for verb in ("verify", "predict"):
        args = (verb, str(bundle)) if verb == "verify" else (verb, str(bundle), "who calls x")
        refused = cli(*args, cwd=tmp_path)
        assert refused.returncode == 2
        assert refused.stdout == "" and "Traceback" not in refused.stderr
        message = refused.stderr.strip()
        assert message.count("\n") == 0, message
        assert message.startswith(f"error: Bundle {bundle}: model.onnx does not match checksums.json")
        assert "intentcraft run" in message
