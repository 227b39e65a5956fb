"""Recipe composition (Hydra), schema (pydantic) and error formatting."""
