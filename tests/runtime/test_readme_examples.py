"""bench/readme_examples.py: README's routed-examples table is written from a bundle and checked against it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.readme_examples import README, Routed, agrees, check, decision_words, read_block, write
from tests.runtime.tiny_bundle import TEXTS

TEMPLATE = "intro\n\n<!-- routed: tiny -->\n{table}<!-- /routed -->\n\nafter\n"


def readme_with(tmp_path: Path, rows: list[tuple[str, str, float, str]]) -> Path:
    lines = "".join(f'| "{q}" | {p} | {c:.3f} | {d} |\n' for q, p, c, d in rows)
    table = "| query | most probable intent | calibrated confidence | decision |\n|---|---|---:|---|\n" + lines
    path = tmp_path / "README.md"
    path.write_text(TEMPLATE.format(table=table), encoding="utf-8")
    return path


def test_written_table_is_what_the_router_says_and_then_checks_clean(bundle: Path, tmp_path: Path) -> None:
    from framework.runtime import Router

    readme = readme_with(tmp_path, [(text, "Nothing", 0.0, "accept") for text in TEXTS[:3]])
    assert len(check(bundle, readme)) == 3  # placeholders disagree with the bundle
    write(bundle, readme)
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("intro\n") and text.endswith("<!-- /routed -->\n\nafter\n")
    recipe, rows = read_block(text)
    results = Router.load(bundle).predict(TEXTS[:3])
    assert recipe == "tiny"
    assert [(r.query, r.predicted, r.decision) for r in rows] == [
        (t, res.predicted, decision_words(res.decision, res.abstained_by))
        for t, res in zip(TEXTS[:3], results, strict=True)
    ]
    assert decision_words("abstain", ("confidence", "out_of_distribution")) == "abstain (confidence, OOD score)"
    assert decision_words("abstain", ("fallback_intent",)) == "abstain (out-of-scope intent)"
    assert [r.confidence for r in rows] == pytest.approx([res.confidence for res in results], abs=5e-4)
    assert check(bundle, readme) == []


def test_a_changed_route_or_confidence_is_reported(bundle: Path, tmp_path: Path) -> None:
    readme = readme_with(tmp_path, [(TEXTS[0], "x", 0.0, "accept")])
    write(bundle, readme)
    _, [row] = read_block(readme.read_text(encoding="utf-8"))
    off = readme_with(tmp_path, [(row.query, row.predicted, min(1.0, row.confidence + 0.05), row.decision)])
    [problem] = check(bundle, off)
    assert problem.startswith(f'"{TEXTS[0]}": README says {row.predicted}')
    assert check(bundle, off, tolerance=0.06) == []


def test_a_near_boundary_row_is_held_to_its_abstention_only() -> None:
    by_ood = Routed("q", "SymbolQuery", 0.708, "abstain (confidence, OOD score)")
    assert agrees(by_ood, Routed("q", "Ambiguous", 0.873, "abstain (out-of-scope intent)"))
    assert agrees(by_ood, Routed("q", "FindCallers", 1.0, "abstain (OOD score)"))
    assert not agrees(by_ood, Routed("q", "SymbolQuery", 0.99, "accept"))
    by_fallback = Routed("q", "Ambiguous", 0.997, "abstain (out-of-scope intent)")
    assert agrees(by_fallback, Routed("q", "Ambiguous", 0.985, "abstain (out-of-scope intent)"))
    assert not agrees(by_fallback, Routed("q", "Ambiguous", 0.95, "abstain (out-of-scope intent)"))
    assert not agrees(by_fallback, Routed("q", "SymbolQuery", 0.997, "abstain (confidence)"))
    accepted = Routed("q", "FindCallers", 1.0, "accept")
    assert not agrees(accepted, Routed("q", "FindCallers", 1.0, "abstain (OOD score)"))


def test_a_bundle_of_another_recipe_is_refused(bundle: Path, tmp_path: Path) -> None:
    readme = readme_with(tmp_path, [(TEXTS[0], "x", 0.0, "accept")])
    readme.write_text(readme.read_text().replace("routed: tiny", "routed: code_search"), encoding="utf-8")
    with pytest.raises(SystemExit, match="is a bundle of tiny; README's table is of code_search"):
        check(bundle, readme)


def test_the_project_readme_has_a_table_of_the_default_recipe() -> None:
    recipe, rows = read_block(README.read_text(encoding="utf-8"))
    assert recipe == "code_search" and len(rows) >= 4
    signals = r"( \((out-of-scope intent|confidence|OOD score)(, (confidence|OOD score))?\))"
    assert all(re.fullmatch(f"accept|abstain{signals}", row.decision) and 0 < row.confidence <= 1 for row in rows)
