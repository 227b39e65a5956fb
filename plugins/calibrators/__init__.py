"""Built-in calibrators (one module each; registered on import)."""
