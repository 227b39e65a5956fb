"""Running a recipe's stages: targets and stage kinds, the content-addressed runner, stage facts, staleness
explanations, per-stage locks and progress."""
