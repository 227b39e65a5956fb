"""Write or check README's table of how the default bundle routes a few queries.

README.md holds the table between ``<!-- routed: RECIPE -->`` and ``<!-- /routed -->``. This script routes
the table's queries with a bundle of that recipe and either rewrites the table (``--write``) or checks it
(the default): the same route and decision and a confidence within ``--tolerance`` for every query that is
accepted or routed to the out-of-scope intent. A query abstained on by the confidence threshold or the OOD score
sits near a decision boundary, where a bundle trained on another CPU (not bit-identical) or under another seed
moves its top intent and confidence by far more than the tolerance; for those the check holds the abstention
only.
The slow end-to-end test of the default recipe runs the check against the bundle it builds.

    .venv/bin/python bench/readme_examples.py outputs/runs/code_search/<time>/bundle           # check
    .venv/bin/python bench/readme_examples.py outputs/runs/code_search/<time>/bundle --write   # rewrite
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- routed: (?P<recipe>[\w-]+) -->\n)(?P<table>.*?)(<!-- /routed -->)", re.DOTALL)
HEADER = "| query | most probable intent | calibrated confidence | decision |\n|---|---|---:|---|\n"
TOLERANCE = 0.02
"""Confidences may differ this much between CPUs (a bundle trained elsewhere is not bit-identical)."""


@dataclass(frozen=True)
class Routed:
    """One table row: a query and what the bundle made of it."""

    query: str
    predicted: str
    confidence: float
    decision: str


def read_block(text: str) -> tuple[str, list[Routed]]:
    """The recipe named by README's block and its table rows."""
    match = BLOCK.search(text)
    if match is None:
        raise SystemExit("README.md has no <!-- routed: RECIPE --> ... <!-- /routed --> block")
    rows = []
    for line in match["table"].splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4:
            raise SystemExit(f"README.md: a routed-table row needs 4 cells: {line!r}")
        rows.append(Routed(cells[0].strip('"'), cells[1], float(cells[2]), cells[3]))
    return match["recipe"], rows


def route(bundle: Path, queries: list[str], recipe: str | None = None) -> list[Routed]:
    """What the bundle does with each query (refused when the bundle is not of ``recipe``)."""
    from framework.runtime import Router

    router = Router.load(bundle)
    if recipe is not None and router.info.manifest.recipe != recipe:
        raise SystemExit(f"{bundle} is a bundle of {router.info.manifest.recipe}; README's table is of {recipe}")
    results = router.predict(queries)
    return [
        Routed(q, r.predicted or "", round(r.confidence, 3), decision_words(r.decision, r.abstained_by))
        for q, r in zip(queries, results, strict=True)
    ]


SIGNAL_WORDS = {
    "fallback_intent": "out-of-scope intent",
    "confidence": "confidence",
    "out_of_distribution": "OOD score",
}


def decision_words(decision: str, signals: tuple[str, ...]) -> str:
    """``accept``, or ``abstain`` with the signals that abstained, e.g. ``abstain (confidence, OOD score)``."""
    if decision == "accept" or not signals:
        return decision
    return f"{decision} ({', '.join(SIGNAL_WORDS.get(signal, signal) for signal in signals)})"


def render(rows: list[Routed]) -> str:
    """The table as README shows it."""
    lines = [f'| "{r.query}" | {r.predicted} | {r.confidence:.3f} | {r.decision} |' for r in rows]
    return HEADER + "\n".join(lines) + "\n"


def near_boundary(row: Routed) -> bool:
    """Abstained on by the confidence threshold or the OOD score (not by predicting the out-of-scope intent)."""
    return row.decision.startswith("abstain") and row.decision != decision_words("abstain", ("fallback_intent",))


def agrees(want: Routed, got: Routed, tolerance: float = TOLERANCE) -> bool:
    """Whether ``got`` is what the table row ``want`` says (only the abstention, for a near-boundary row)."""
    if near_boundary(want):
        return got.decision.startswith("abstain")
    same = (want.predicted, want.decision) == (got.predicted, got.decision)
    return same and abs(want.confidence - got.confidence) <= tolerance


def differences(expected: list[Routed], actual: list[Routed], tolerance: float = TOLERANCE) -> list[str]:
    """Where the bundle disagrees with the table (empty: it agrees)."""
    found = []
    for want, got in zip(expected, actual, strict=True):
        if not agrees(want, got, tolerance):
            found.append(
                f'"{want.query}": README says {want.predicted} {want.confidence:.3f} {want.decision}, '
                f"the bundle gives {got.predicted} {got.confidence:.3f} {got.decision}"
            )
    return found


def check(bundle: Path, readme: Path = README, tolerance: float = TOLERANCE) -> list[str]:
    """Differences between README's table and ``bundle`` (empty when README is right)."""
    recipe, expected = read_block(readme.read_text(encoding="utf-8"))
    return differences(expected, route(bundle, [row.query for row in expected], recipe), tolerance)


def write(bundle: Path, readme: Path = README) -> None:
    """Rewrite README's table from ``bundle``."""
    text = readme.read_text(encoding="utf-8")
    recipe, expected = read_block(text)
    table = render(route(bundle, [row.query for row in expected], recipe))
    readme.write_text(BLOCK.sub(lambda m: m[1] + table + m[4], text, count=1), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="a bundle of the recipe README's block names")
    parser.add_argument("--write", action="store_true", help="rewrite README's table instead of checking it")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help="confidence difference allowed")
    args = parser.parse_args(argv)
    if args.write:
        write(args.bundle)
        print(f"README.md: table rewritten from {args.bundle}")
        return 0
    found = check(args.bundle, tolerance=args.tolerance)
    for line in found:
        print(line)
    print("README.md agrees with the bundle" if not found else f"{len(found)} rows disagree; rerun with --write")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
