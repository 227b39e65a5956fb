"""Pipeline helper shared by the benchmarks (imported as ``_pipeline`` when a bench script runs from ``bench/``)."""

from __future__ import annotations

from pathlib import Path

from framework.config.check import ValidatedRecipe, check_recipe
from framework.config.compose import compose_recipe, resolve_recipe
from framework.pipeline.runner import Pipeline
from framework.pipeline.targets import target_stages


def build(
    recipe: str | Path, outputs: Path, indent: str = "", until: str | None = None, overrides: tuple[str, ...] = ()
) -> tuple[dict[str, Path], ValidatedRecipe]:
    """Every stage of a recipe (a shipped name or a file, with Hydra ``overrides``) up to ``until`` (None: all),
    built or reused from the cache under ``outputs``: ``{stage: directory}`` and the checked recipe. Prints each
    stage's action as it goes."""
    ref = resolve_recipe([f"recipe={recipe}", *overrides])
    checked = check_recipe(compose_recipe(ref), str(ref.path))
    pipeline = Pipeline(target_stages(checked.config.target), checked, outputs)
    plans = pipeline.run(lambda plan, action: print(f"{indent}{plan.stage.name}: {action}", flush=True), until=until)
    return {plan.stage.name: plan.directory for plan in plans}, checked
