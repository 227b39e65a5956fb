"""Reliability diagram of the calibrator (underscore: not loaded as a plugin).

Drawn on a bare ``matplotlib.figure.Figure`` (no pyplot, no display, no global backend state) and
written atomically as PNG.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from framework.io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes


@dataclass(frozen=True)
class Panel:
    """One column of the diagram: top-label confidences, whether each prediction was right, and a title."""

    title: str
    confidence: np.ndarray
    correct: np.ndarray


def bin_stats(confidence: np.ndarray, correct: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin over [0, 1]: row count, mean accuracy and mean confidence (NaN when empty)."""
    index = np.digitize(confidence, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    counts = np.bincount(index, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, weights=correct.astype(float), minlength=bins) / counts
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / counts
    return counts, accuracy, mean_confidence


def _draw_panel(reliability_ax: Axes, histogram_ax: Axes, panel: Panel, bins: int) -> None:
    counts, accuracy, mean_confidence = bin_stats(panel.confidence, panel.correct, bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    centers, width = (edges[:-1] + edges[1:]) / 2, 1.0 / bins
    filled = counts > 0
    reliability_ax.bar(centers[filled], accuracy[filled], width, edgecolor="black", label="accuracy")
    gap = mean_confidence[filled] - accuracy[filled]
    reliability_ax.bar(
        centers[filled], gap, width, bottom=accuracy[filled], color="red", alpha=0.5, edgecolor="black", label="gap"
    )
    reliability_ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    reliability_ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=panel.title)
    reliability_ax.legend(loc="upper left", fontsize="small")
    histogram_ax.bar(centers, counts / max(counts.sum(), 1.0), width, edgecolor="black")
    histogram_ax.set(xlim=(0, 1), xlabel="confidence (top label)", ylabel="share of rows")


def write_reliability_diagram(path: Path, panels: list[Panel], bins: int) -> Path:
    """Draw one reliability diagram (with a confidence histogram below) per panel, side by side, to ``path``."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5 * len(panels), 6))
    axes = figure.subplots(2, len(panels), squeeze=False, height_ratios=(3, 1), sharex=True)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.09, top=0.95, wspace=0.22, hspace=0.12)
    for column, panel in enumerate(panels):
        _draw_panel(axes[0, column], axes[1, column], panel, bins)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())
    return path
