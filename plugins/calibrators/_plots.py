"""Reliability diagram of the calibrator (underscore: not loaded as a plugin).

Drawn on a bare ``matplotlib.figure.Figure`` (no pyplot, no display, no global backend state) and
written atomically as PNG. Each panel shows accuracy per confidence bin with the gap to the bin's mean
confidence (over- and under-confidence in their own colours and hatches), faded in proportion to the
bin's rows below ``SMALL_BIN_ROWS``, and below it the rows per bin on a log scale, each count written out.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from framework.evaluation.calibration import SMALL_BIN_ROWS, bin_stats
from framework.io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ACCURACY_COLOR, OVER_COLOR, UNDER_COLOR, DIAGONAL_COLOR = "tab:blue", "tab:red", "tab:orange", "gray"
OVER_HATCH, UNDER_HATCH = "//", "\\\\"
MIN_ALPHA = 0.25  # a bin holding one row is drawn this opaque; SMALL_BIN_ROWS rows or more fully opaque


@dataclass(frozen=True)
class Panel:
    """One column of the diagram: top-label confidences, whether each prediction was right, and a title."""

    title: str
    confidence: np.ndarray
    correct: np.ndarray


def bin_alpha(counts: np.ndarray) -> np.ndarray:
    """Opacity per bin: rising linearly with its rows from ``MIN_ALPHA`` (one row) to 1 (``SMALL_BIN_ROWS``)."""
    share = np.clip((np.asarray(counts, dtype=float) - 1) / (SMALL_BIN_ROWS - 1), 0.0, 1.0)
    return MIN_ALPHA + (1 - MIN_ALPHA) * share


def _gap_style(over: bool) -> dict[str, str]:
    color, hatch = (OVER_COLOR, OVER_HATCH) if over else (UNDER_COLOR, UNDER_HATCH)
    return {"facecolor": "none", "edgecolor": color, "hatch": hatch}


def _legend_handles() -> list[Artist]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [
        Patch(facecolor=ACCURACY_COLOR, edgecolor="black", label="accuracy of the bin"),
        Patch(**_gap_style(True), label="over-confident: confidence above accuracy"),
        Patch(**_gap_style(False), label="under-confident: accuracy above confidence"),
        Patch(
            facecolor=ACCURACY_COLOR, edgecolor="black", alpha=MIN_ALPHA, label=f"faded: under {SMALL_BIN_ROWS} rows"
        ),
        Line2D([0, 1], [0, 1], linestyle="--", color=DIAGONAL_COLOR, label="perfect calibration"),
    ]


def _draw_reliability(ax: Axes, centers: np.ndarray, width: float, stats: tuple[np.ndarray, ...], title: str) -> None:
    counts, accuracy, mean_confidence = stats
    for center, rows, right, said in zip(centers, counts, accuracy, mean_confidence, strict=True):
        if rows == 0:
            continue
        alpha = float(bin_alpha(np.array([rows]))[0])
        ax.bar(center, right, width, color=ACCURACY_COLOR, edgecolor="black", alpha=alpha)
        if said != right:
            ax.bar(center, abs(said - right), width, bottom=min(said, right), alpha=alpha, **_gap_style(said > right))
    ax.plot([0, 1], [0, 1], "--", color=DIAGONAL_COLOR)
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=title)


def _draw_counts(ax: Axes, centers: np.ndarray, width: float, counts: np.ndarray, bins: int) -> None:
    filled = counts > 0
    ax.bar(centers[filled], counts[filled], width, color=ACCURACY_COLOR, edgecolor="black")
    ax.set_yscale("log")
    ax.set(xlim=(0, 1), ylim=(0.5, max(counts.max(), 1) * 8), xlabel="confidence (top label)", ylabel="rows per bin")
    size, rotation = (7, 0) if bins <= 20 else (5, 90)
    for center, rows in zip(centers[filled], counts[filled], strict=True):
        ax.text(center, rows * 1.3, f"{int(rows):,}", ha="center", va="bottom", fontsize=size, rotation=rotation)


def _draw_panel(reliability_ax: Axes, count_ax: Axes, panel: Panel, bins: int) -> None:
    stats = bin_stats(panel.confidence, panel.correct, bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    centers, width = (edges[:-1] + edges[1:]) / 2, 1.0 / bins
    _draw_reliability(reliability_ax, centers, width, stats, panel.title)
    _draw_counts(count_ax, centers, width, stats[0], bins)


def reliability_figure(panels: list[Panel], bins: int) -> Figure:
    """One reliability diagram (rows per bin below it) per panel, side by side, under one legend."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5 * len(panels), 7))
    axes = figure.subplots(2, len(panels), squeeze=False, height_ratios=(3, 1.2), sharex=True)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.86, wspace=0.22, hspace=0.12)
    for column, panel in enumerate(panels):
        _draw_panel(axes[0, column], axes[1, column], panel, bins)
    figure.legend(handles=_legend_handles(), loc="upper center", ncols=3, fontsize="small", frameon=False)
    return figure


def write_reliability_diagram(path: Path, panels: list[Panel], bins: int) -> Path:
    """Draw :func:`reliability_figure` to ``path`` as PNG (atomically)."""
    buffer = io.BytesIO()
    reliability_figure(panels, bins).savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())
    return path
