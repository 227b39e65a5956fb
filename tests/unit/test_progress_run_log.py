"""The run log: stage lines with timings, and no third-party INFO noise (warnings kept)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from framework.cli.launch import StageLines, quiet_libraries
from framework.pipeline.runner import State


class Records(logging.Handler):
    """Keeps every record that reaches the root logger's handlers, as the run log's file handler would."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.name, record.levelname, record.getMessage()))


@pytest.fixture
def root_records() -> Iterator[Records]:
    """A handler on the root logger with the root at INFO, as Hydra's job logging sets it up."""
    root, handler = logging.getLogger(), Records()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_quiet_libraries_drops_third_party_info_and_keeps_warnings_and_our_info(root_records: Records) -> None:
    with quiet_libraries():
        logging.info('Quantization parameters for tensor:"x" not specified')  # onnxruntime's quantizer: the root
        logging.getLogger("fusion_base").info("Fused Gelu: 6")
        logging.getLogger("onnx_model").info("Removed 126 nodes")
        logging.getLogger("httpx").info("HTTP Request: POST http://127.0.0.1/v1/chat/completions")
        logging.getLogger("intentcraft").info("train: started")
        logging.getLogger("intentcraft.llm").info("a child of intentcraft")
        logging.getLogger("onnxruntime").warning("a warning from onnxruntime")
        logging.warning("a warning on the root logger")
    logging.getLogger("fusion_base").info("after the run: levels are back")
    assert root_records.seen == [
        ("intentcraft", "INFO", "train: started"),
        ("intentcraft.llm", "INFO", "a child of intentcraft"),
        ("onnxruntime", "WARNING", "a warning from onnxruntime"),
        ("root", "WARNING", "a warning on the root logger"),
        ("fusion_base", "INFO", "after the run: levels are back"),
    ]


def test_quiet_libraries_does_not_make_a_quieter_logger_louder() -> None:
    quiet = logging.getLogger("transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with quiet_libraries():
            assert quiet.level == logging.ERROR
        assert quiet.level == logging.ERROR
    finally:
        quiet.setLevel(level)


class FakePipeline:
    """Only what StageLines reads: a stage's manifest."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds

    def manifest(self, plan: Any) -> dict[str, Any]:
        return {} if self.seconds is None else {"seconds": self.seconds}


def plan(name: str, state: State = State.MISSING, reason: str = "never run for this recipe") -> Any:
    return SimpleNamespace(
        stage=SimpleNamespace(name=name), fingerprint="0123456789abcdef0123", state=state, reason=reason
    )


def test_stage_lines_say_start_and_end_with_durations_to_the_user_and_the_run_log(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    out, now = io.StringIO(), [100.0]
    lines = StageLines(Console(file=out, force_terminal=False), FakePipeline(73.2), clock=lambda: now[0])  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="intentcraft"):
        lines.end(plan("generate", State.CURRENT, ""), "cached")
        lines.start(plan("train", State.STALE, "recipe key trainer.lr changed"))
        now[0] += 12.5
        lines.end(plan("train"), "ran")
        lines.start(plan("export"))
        now[0] += 45
        lines.end(plan("export"), "cached")  # another run published it while this one waited for the lock
        lines.start(plan("generate", State.CURRENT, ""))  # --force
        now[0] += 200
        lines.end(plan("generate"), "stopped")
    assert capsys.readouterr().err.splitlines() == [
        "train: started (stale: recipe key trainer.lr changed)",
        "export: started (missing: never run for this recipe)",
        "generate: started (forced)",
    ]
    ends = [
        "generate: cached (0123456789ab), computed by an earlier run in 1m 13s",
        "train: ran (0123456789ab) in 12.5 s",
        "export: cached (0123456789ab), computed by another run while this one waited 45.0 s",
        "generate: PARTIAL (0123456789ab) after 3m 20s",
    ]
    assert out.getvalue().splitlines() == ends
    assert [r.getMessage() for r in caplog.records] == [
        ends[0],
        "train: started (stale: recipe key trainer.lr changed)",
        ends[1],
        "export: started (missing: never run for this recipe)",
        ends[2],
        "generate: started (forced)",
        ends[3],
    ]
    assert lines.actions == {"generate": "stopped", "train": "ran", "export": "cached"}
